"""Sequence regression: one real target per sequence, read after its last step (the adding problem)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanSquaredError

from lightsuite.tasks.sequence import SequenceTask


class SequenceRegressionTask(SequenceTask):
    """MSE training; `val/mse` and `test/mse` over whole splits."""

    report_metrics: tuple[str, ...] = ("val/mse", "train/loss")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, gradient_clip_val)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError()

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.mse_loss(self.net(batch["x"])[0], batch["y"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_mse.update(self.net(batch["x"])[0], batch["y"])

    def on_validation_epoch_end(self) -> None:
        self.log("val/mse", self.val_mse.compute(), prog_bar=True)
        self.val_mse.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_mse.update(self.net(batch["x"])[0], batch["y"])

    def on_test_epoch_end(self) -> None:
        self.log("test/mse", self.test_mse.compute())
        self.test_mse.reset()

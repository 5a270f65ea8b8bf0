"""Image classification: cross-entropy training of any network that maps images to logits."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric

from lightsuite.errors import ConfigError
from lightsuite.tasks.metrics import TopKAccuracy
from lightsuite.tasks.steps import logs_this_step, raise_if_diverged


def _prefixed(stage: str, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{stage}/{name}": value for name, value in metrics.items()}


class ClassificationTask(pl.LightningModule):
    """Trains `net` with cross-entropy; logs `train/`, `val/`, `test/` loss and accuracy and `val/acc_best`.

    `optimizer` and `scheduler` are partials (Hydra `_partial_: true`): the optimizer takes the
    parameters, the scheduler the optimizer and the run's total number of optimizer steps.
    """

    # what `lightsuite-report` plots for this family unless told otherwise
    report_metrics: tuple[str, ...] = ("val/acc", "train/loss")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing={label_smoothing} must be in [0, 1)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        num_classes = num_classes or getattr(net, "num_classes", None)
        if num_classes is None:
            raise ConfigError("task.num_classes is not set and the network has no `num_classes` attribute")
        # top-5 where there are enough classes for it to mean something
        ks = (1, 5) if num_classes >= 10 else (1,)
        self.train_acc, self.val_acc, self.test_acc = TopKAccuracy(ks), TopKAccuracy(ks), TopKAccuracy(ks)
        # NaNs must survive the mean so that a diverged run is noticed, not averaged away
        self.train_loss = MeanMetric(nan_strategy="disable")
        # sample-weighted means, summed over DDP ranks: exact whatever the ranks' shard sizes
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # kept in checkpoints, so that a resumed run still knows its best epoch
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits.detach(), y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, logits, y = self._step(batch)
        self.train_loss.update(loss.detach())
        self.train_acc.update(logits, y)
        if logs_this_step(self.trainer, self.global_step):
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.train_loss.update_count == 0:  # no training batches this epoch
            return
        loss = self.train_loss.compute()
        self.train_loss.reset()
        lr = self.optimizers().param_groups[0]["lr"]
        clip = "trainer.gradient_clip_val=1.0"
        raise_if_diverged({"train/loss": loss}, self.current_epoch, {"task.optimizer.lr": lr}, clip)
        self.log("train/loss_epoch", loss, sync_dist=True)
        self.log_dict(_prefixed("train", self.train_acc.compute()), sync_dist=True)
        self.train_acc.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_acc.update(logits, y)
        self.val_loss.update(loss, weight=len(y))
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        metrics = _prefixed("val", self.val_acc.compute())
        self.val_acc.reset()
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        # the sanity check's few batches must not count as the best epoch
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(metrics["val/acc"])
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_acc.update(logits, y)
        self.test_loss.update(loss, weight=len(y))
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(_prefixed("test", self.test_acc.compute()), sync_dist=True)
        self.test_acc.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "the lr schedule needs a finite run: set trainer.max_epochs or trainer.max_steps"
            )
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

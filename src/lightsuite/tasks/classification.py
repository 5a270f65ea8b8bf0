"""Image classification: cross-entropy training of any network that maps images to logits."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightsuite.errors import ConfigError, DivergedError


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """Top-1 accuracy, and top-5 where there are enough classes for it to mean something."""
    metrics = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes >= 10:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class ClassificationTask(pl.LightningModule):
    """Trains `net` with cross-entropy; logs `train/`, `val/`, `test/` loss and accuracy and `val/acc_best`.

    `optimizer` and `scheduler` are partials (Hydra `_partial_: true`): the optimizer takes the
    parameters, the scheduler the optimizer and the run's total number of optimizer steps.
    """

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
        self.train_metrics = accuracy_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = accuracy_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = accuracy_metrics(num_classes).clone(prefix="test/")
        # NaNs must survive the mean so that a diverged run is noticed, not averaged away
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits.detach(), y

    def on_train_start(self) -> None:
        # the sanity check's validation must not count as the best epoch
        self.val_acc_best.reset()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, logits, y = self._step(batch)
        self.train_loss.update(loss.detach())
        self.train_metrics.update(logits, y)
        # step values reach the loggers every `trainer.log_every_n_steps`
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        loss = self.train_loss.compute()
        self.train_loss.reset()
        if not torch.isfinite(loss):
            raise DivergedError(
                f"train/loss became {loss.item()} in epoch {self.current_epoch}: lower the learning rate "
                f"(task.optimizer.lr, now {self.optimizers().param_groups[0]['lr']:.3g}) "
                "or clip gradients (trainer.gradient_clip_val=1.0)"
            )
        self.log("train/loss_epoch", loss, sync_dist=True)
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        self.val_acc_best.update(metrics["val/acc"])
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_metrics.update(logits, y)
        self.log("test/loss", loss, on_step=False, on_epoch=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()

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

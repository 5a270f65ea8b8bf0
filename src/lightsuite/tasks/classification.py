"""Image classification: cross-entropy training of any network that maps images to logits."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from lightsuite.errors import ConfigError
from lightsuite.io import save_png
from lightsuite.tasks.attacks import ATTACKS, PixelScaling, check_attack, fgsm, fooling_images, pgd
from lightsuite.tasks.gan.pictures import image_grid
from lightsuite.tasks.metrics import TopKAccuracy
from lightsuite.tasks.optim import make_optimizer, to_channels_last, uses_channels_last
from lightsuite.tasks.pictures import WorstImages, write_test_pictures
from lightsuite.tasks.steps import logs_this_step, raise_if_diverged


def _prefixed(stage: str, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{stage}/{name}": value for name, value in metrics.items()}


class ClassificationTask(pl.LightningModule):
    """Trains `net` with cross-entropy; logs `train/`, `val/`, `test/` loss and accuracy and `val/acc_best`.

    `optimizer` and `scheduler` are partials (Hydra `_partial_: true`): the optimizer takes the
    parameters, the scheduler the optimizer and the run's total number of optimizer steps.

    `adversarial="pgd"` (or "fgsm") trains on adversarial examples within `adversarial_eps` ([0, 1]
    pixels, L-inf) of each training batch instead of the batch (Madry et al. 2018), and logs
    `val/robust_acc` under the same attack beside the clean `val/acc`; `train/` metrics are then
    those of the adversarial examples. A checkpoint keeps the data's pixel scaling, so that
    `lightsuite-sample` can draw fooling images from it (`sample_to`).

    On CUDA the optimizer is fused where torch has a fused kernel for it, and a convolutional `net`
    runs in channels_last memory (`channels_last=null`: on CUDA only; true or false forces it), see
    tasks/optim.py.
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
        adversarial: str | None = None,
        adversarial_eps: float = 0.03,
        adversarial_steps: int = 7,
        adversarial_step_size: float | None = None,
        test_pictures: bool = True,
        num_worst_images: int = 16,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing={label_smoothing} must be in [0, 1)")
        if adversarial not in (None, *ATTACKS):
            choices = " or ".join(ATTACKS)
            raise ConfigError(f"task.adversarial={adversarial} is not an attack; choose {choices} or null")
        check_attack(adversarial_eps, adversarial_steps, adversarial_step_size, "task.adversarial_")
        self.adversarial, self.adversarial_eps = adversarial, adversarial_eps
        self.adversarial_steps, self.adversarial_step_size = adversarial_steps, adversarial_step_size
        # the data's [0, 1]-pixels-to-input map and image shape, set when fitting starts
        self.pixel_scaling: PixelScaling | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        # the setting, and what `setup` made of it on the trainer's device
        self.channels_last, self._channels_last = channels_last, False
        num_classes = num_classes or getattr(net, "num_classes", None)
        if num_classes is None:
            raise ConfigError("task.num_classes is not set and the network has no `num_classes` attribute")
        self.num_classes = num_classes
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
        self.val_robust_acc = TopKAccuracy((1,))
        if num_worst_images < 1:
            raise ConfigError(
                f"task.num_worst_images={num_worst_images} must be at least 1 (task.test_pictures=false "
                "draws no pictures)"
            )
        # drawn at the end of the test stage (tasks/pictures.py); both sync over DDP ranks
        self.test_pictures = test_pictures
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_worst = WorstImages(num_worst_images)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        # before Lightning moves the weights to the device (which keeps their layout) and before
        # the optimizer sees them
        device = self.trainer.strategy.root_device
        self._channels_last = uses_channels_last(self.channels_last, device, self.net)
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(to_channels_last(x) if self._channels_last else x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits.detach(), y

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "transform_batch") and hasattr(datamodule, "input_shape"):
            self.input_shape = tuple(datamodule.input_shape)
            normalize = functools.partial(datamodule.transform_batch, train=False)
            self.pixel_scaling = PixelScaling.of(normalize, self.input_shape[0]).to(self.device)
        elif self.adversarial is not None:
            raise ConfigError(
                f"task.adversarial={self.adversarial} needs an image DataModule (data=digits, mnist, "
                "cifar10, ...), whose pixel scaling bounds the attack; set task.adversarial=null"
            )

    def adversarial_inputs(self, x: Tensor, y: Tensor) -> Tensor:
        """The task's attack on a normalized batch, made in eval mode: its extra forward passes must not
        move batch-norm statistics."""
        assert self.pixel_scaling is not None, "set when fitting starts"
        scaling, training = self.pixel_scaling.to(x.device), self.net.training
        self.net.eval()
        try:
            if self.adversarial == "fgsm":
                return fgsm(self.net, x, y, scaling, self.adversarial_eps)
            steps, size = self.adversarial_steps, self.adversarial_step_size
            return pgd(self.net, x, y, scaling, self.adversarial_eps, steps, size)
        finally:
            self.net.train(training)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.adversarial is not None:
            batch = (self.adversarial_inputs(*batch), batch[1])
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
        if self.adversarial is not None:
            self.val_robust_acc.update(self(self.adversarial_inputs(*batch)), y)

    def on_validation_epoch_end(self) -> None:
        metrics = _prefixed("val", self.val_acc.compute())
        self.val_acc.reset()
        if self.adversarial is not None:
            metrics["val/robust_acc"] = self.val_robust_acc.compute()["acc"]
            self.val_robust_acc.reset()
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
        if self.test_pictures:
            self.test_confusion.update(logits.argmax(dim=1), y)
            self.test_worst.update(batch[0], logits, y)

    def on_test_epoch_end(self) -> None:
        self.log_dict(_prefixed("test", self.test_acc.compute()), sync_dist=True)
        self.test_acc.reset()
        if self.test_confusion.update_count:  # updated only with task.test_pictures=true
            # compute on every rank (it gathers), draw on rank 0
            matrix, worst = self.test_confusion.compute(), self.test_worst.compute()
            self.test_confusion.reset(), self.test_worst.reset()
            if self.trainer.is_global_zero:
                datamodule = getattr(self.trainer, "datamodule", None)
                run_dir = self.trainer.default_root_dir
                write_test_pictures(matrix, worst, run_dir, self.loggers, self.global_step, datamodule)

    def configure_optimizers(self) -> Any:
        optimizer = make_optimizer(self.optimizer_factory, self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "the lr schedule needs a finite run: set trainer.max_epochs or trainer.max_steps"
            )
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- checkpoints and lightsuite-sample: fooling images --------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a checkpoint alone must map pixels to inputs: fooling images are drawn in [0, 1] pixels
        if self.pixel_scaling is not None and self.input_shape is not None:
            scale, shift = self.pixel_scaling.as_lists()
            shape = list(self.input_shape)
            checkpoint["pixel_scaling"] = {"scale": scale, "shift": shift, "input_shape": shape}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "pixel_scaling" in checkpoint:
            saved = checkpoint["pixel_scaling"]
            self.pixel_scaling = PixelScaling.from_lists(saved["scale"], saved["shift"])
            self.input_shape = tuple(saved["input_shape"])

    def sample_to(self, options: DictConfig) -> str:
        """Fooling images (Nguyen et al. 2015): a PNG grid at `options.output` of one image per class (or
        of class `options.label` alone), grown from noise until the network calls it that class with
        `fooling_confidence`; the summary gives each confidence and names any class that fell short."""
        output = Path(str(options.output)).expanduser()
        target = float(options.get("fooling_confidence", 0.99))
        steps = int(options.get("fooling_steps", 200))
        if output.suffix != ".png":
            raise ConfigError(f"output={output}: fooling images are a PNG grid; pass output=fooling.png")
        if not 0 < target < 1:
            raise ConfigError(f"fooling_confidence={target} must be in (0, 1), e.g. 0.99")
        if steps < 1:
            raise ConfigError(f"fooling_steps={steps} must be at least 1")
        if self.pixel_scaling is None or self.input_shape is None:
            raise ConfigError(
                f"ckpt_path={options.get('ckpt_path')} records no pixel scaling (saved before fooling images "
                "existed, or trained without an image DataModule); train it again with lightsuite-train"
            )
        scaling = self.pixel_scaling.to(self.device)
        shape = (self.input_shape[0], self.input_shape[1], self.input_shape[2])
        label = options.get("label")  # one class's fooling image, or one of each
        if label is not None and not 0 <= label < self.num_classes:
            known = f"classes 0 to {self.num_classes - 1}"
            raise ConfigError(f"label={label} is out of range: this classifier knows {known}")
        classes = list(range(self.num_classes)) if label is None else [label]
        images, reached = fooling_images(self.net, scaling, shape, classes, steps, 0.01, target)
        save_png(image_grid(images * 2 - 1, nrow=len(images)), output)
        confidences = dict(zip(classes, reached.tolist(), strict=True))
        shown = ", ".join(f"{c}: {p:.4f}" for c, p in confidences.items())
        which = f"class {label}" if label is not None else "classes 0.. left to right"
        summary = f"wrote {len(images)} fooling images ({which}) to {output}: {shown}"
        missed = [c for c, p in confidences.items() if p < target]
        if missed:
            summary += f"; classes {missed} stayed below {target} after {steps} steps (raise fooling_steps)"
        return summary

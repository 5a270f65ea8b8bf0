"""What every sequence task shares: the optimizer loop, amortized over several batches per Lightning step.

A recurrent network on a small series takes well under a millisecond per optimizer step on a CPU,
less than Lightning's own per-step bookkeeping (hooks, loop state, progress). The loaders of the
sequence DataModules can therefore hand over `batches_per_step` consecutive batches at once, and
`training_step` takes one optimizer step per batch (manual optimization): the same batches in the
same order, the same updates, clipping and schedule steps as one batch per Lightning step, with
the framework's cost paid once per group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric

from lightsuite.errors import ConfigError, DivergedError


class SequenceTask(pl.LightningModule):
    """Base of the sequence tasks: subclasses implement `loss(batch) -> Tensor` and their metrics."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ConfigError(
                f"task.gradient_clip_val={gradient_clip_val} must be > 0 (or null: no clipping)"
            )
        # several optimizer steps per Lightning step: see the module docstring
        self.automatic_optimization = False
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.gradient_clip_val = gradient_clip_val
        # NaNs must survive the mean so that a diverged run is noticed, not averaged away
        self.train_loss = MeanMetric(nan_strategy="disable")

    def loss(self, batch: Any) -> Tensor:
        raise NotImplementedError

    def training_step(self, batches: list[Any], batch_idx: int) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        plain = self._plain_backward()
        losses = []
        for batch in batches:
            loss = self.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            if plain:
                loss.backward()
            else:
                self.manual_backward(loss)
            if self.gradient_clip_val is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
        # one metric update per group: the same epoch mean over batches, fewer calls
        self.train_loss.update(torch.stack(losses))
        if self._logging_step():
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)

    def _plain_backward(self) -> bool:
        """Whether `loss.backward()` is all `manual_backward` would do: fp32 on one device, no hooks.

        Lightning's version dispatches precision, strategy and callback hooks around each backward;
        that is most of what remains of its per-step cost for a tiny network. It is skipped only
        where none of them can act: 32-bit precision, a single device, no callback overriding the
        backward hooks.
        """
        trainer = self.trainer
        if str(trainer.precision) not in ("32-true", "32") or trainer.world_size != 1:
            return False
        hooks = ("on_before_backward", "on_after_backward")
        overridden = any(getattr(type(self), hook) is not getattr(pl.LightningModule, hook) for hook in hooks)
        return not overridden and not any(
            getattr(type(cb), hook) is not getattr(pl.Callback, hook)
            for cb in trainer.callbacks
            for hook in hooks
        )

    def _logging_step(self) -> bool:
        """Whether this step's values reach the loggers: `self.log` costs a few percent of a tiny step."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return (
            bool(trainer.fast_dev_run)
            or trainer.should_stop
            or (every > 0 and (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % every == 0)
        )

    def on_train_epoch_end(self) -> None:
        if self.train_loss.update_count == 0:
            return
        loss = self.train_loss.compute()
        self.train_loss.reset()
        if not torch.isfinite(loss):
            raise DivergedError(
                f"train/loss became {loss.item()} in epoch {self.current_epoch}: lower the learning rate "
                f"(task.optimizer.lr, now {self.optimizers().param_groups[0]['lr']:.3g}) "
                "or clip gradients (task.gradient_clip_val=1.0)"
            )
        self.log("train/loss_epoch", loss, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "the lr schedule needs a finite run: set trainer.max_epochs or trainer.max_steps"
            )
        # with several batches per Lightning step, the estimate counts groups, not optimizer steps
        sampler = getattr(self.trainer.train_dataloader, "sampler", None)
        if hasattr(sampler, "batches_per_epoch"):
            total = round(total * sampler.batches_per_epoch / len(sampler))
        if self.trainer.max_steps > 0:
            total = min(total, self.trainer.max_steps)
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

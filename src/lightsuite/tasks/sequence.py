"""What every sequence task shares: the optimizer loop, amortized over several batches per Lightning step.

A recurrent network on a small series takes well under a millisecond per optimizer step on a CPU,
less than Lightning's own per-step bookkeeping (hooks, loop state, progress). The loaders of the
sequence DataModules can therefore hand over `batches_per_step` consecutive batches at once, and
`training_step` takes one optimizer step per batch (manual optimization): the same batches in the
same order, the same updates, clipping and schedule steps as one batch per Lightning step, with
the framework's cost paid once per group.

Where nothing could notice (`tasks/steps.py` `hooks_can_be_skipped`: plain fp32 on one device, no
profiler, no hook overridden), each update also bypasses Lightning's dispatch: `loss.backward()`,
torch's clipping and the raw optimizer's `step`, between the two calls by which Lightning counts an
optimizer step (so `global_step` counts every update of a group, as through `LightningOptimizer.step`).
For a network as small as the sunspots LSTM, the dispatch around one update (closure, callback and
module hooks, precision and strategy calls) costs a few percent of it.
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

from lightsuite.errors import ConfigError
from lightsuite.tasks.metrics import LossMean
from lightsuite.tasks.steps import (
    BACKWARD_HOOKS,
    OPTIMIZER_STEP_HOOKS,
    hooks_can_be_skipped,
    logs_this_step,
    raise_if_diverged,
)


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
        self.train_loss = LossMean()
        self._plain_backward = self._plain_step = False

    def loss(self, batch: Any) -> Tensor:
        raise NotImplementedError

    def training_step(self, batches: list[Any], batch_idx: int) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        update = self._plain_update if self._plain_step else self._update
        losses = []
        for batch in batches:
            loss = self.loss(batch)
            update(optimizer, loss)
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
        # one metric update per group: the same epoch mean over batches, fewer calls
        self.train_loss.update(torch.stack(losses))
        # Lightning steps, not optimizer steps: `global_step` counts each of the group's updates
        if logs_this_step(self.trainer, self.trainer.fit_loop.epoch_loop._batches_that_stepped):
            self.log("train/loss", losses[-1], on_step=True, on_epoch=False, prog_bar=True)

    def _update(self, optimizer: Any, loss: Tensor) -> None:
        """One optimizer step on `loss` through Lightning (its backward, clipping and step dispatch)."""
        optimizer.zero_grad(set_to_none=True)
        if self._plain_backward:
            loss.backward()
        else:
            self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val)
        optimizer.step()

    def _plain_update(self, optimizer: Any, loss: Tensor) -> None:
        """`_update` without the dispatch, where `on_fit_start` found that nothing would notice."""
        raw = optimizer.optimizer
        raw.zero_grad(set_to_none=True)
        loss.backward()
        if self.gradient_clip_val is not None:
            # what Lightning's 32-bit precision plugin calls: every parameter of the optimizer
            params = [p for group in raw.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
        # `LightningOptimizer.step` counts the step through these two (`global_step`, progress)
        optimizer._on_before_step()
        raw.step()
        optimizer._on_after_step()

    def on_fit_start(self) -> None:
        # `manual_backward` and `LightningOptimizer.step` dispatch precision, strategy and hooks around
        # each update: most of Lightning's remaining per-step cost for a tiny network, bypassed where
        # none of it can act
        self._plain_backward = hooks_can_be_skipped(self, BACKWARD_HOOKS)
        self._plain_step = self._plain_backward and hooks_can_be_skipped(self, OPTIMIZER_STEP_HOOKS)

    def on_train_epoch_end(self) -> None:
        if self.train_loss.update_count == 0:
            return
        loss = self.train_loss.compute()
        self.train_loss.reset()
        lr = self.optimizers().param_groups[0]["lr"]
        raise_if_diverged(
            {"train/loss": loss}, self.current_epoch, {"task.optimizer.lr": lr}, "task.gradient_clip_val=1.0"
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

"""What the training loops of the families share: the divergence check, the logging cadence, and the one
rule for when Lightning's per-step dispatch may be bypassed.

A tiny network (an MLP GAN on 2-D points, an LSTM on a short series) spends less time on an optimizer
step than Lightning spends around it in `manual_backward` and `LightningOptimizer.step`. The tasks that
take several optimizer steps per Lightning step may then call `loss.backward()` (and the optimizer's own
`step`) directly, but only where `hooks_can_be_skipped` says that nothing would notice.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import Tensor

from lightsuite.errors import DivergedError

# what `manual_backward` calls around `loss.backward()` (`backward` is a LightningModule hook only)
BACKWARD_HOOKS = ("on_before_backward", "backward", "on_after_backward")
# what `LightningOptimizer.step` calls around `optimizer.step()` under manual optimization
OPTIMIZER_STEP_HOOKS = ("on_before_optimizer_step",)


def hooks_can_be_skipped(module: pl.LightningModule, hooks: tuple[str, ...]) -> bool:
    """Whether a shortcut that bypasses `hooks` changes nothing but the time a step takes.

    Lightning's dispatch does more than call hooks unless the precision plugin is plain 32-bit (the
    `Precision` type exactly: subclasses scale or cast), the strategy is one process on one device and no
    profiler records the calls. Then it matters only where the module or a callback of its trainer
    overrides one of `hooks`, in its class or, as `LambdaCallback` does, on the instance.
    """
    trainer = module.trainer
    if not (
        type(trainer.precision_plugin) is Precision
        and type(trainer.strategy) is SingleDeviceStrategy
        and isinstance(trainer.profiler, PassThroughProfiler)
    ):
        return False
    owners = [(module, pl.LightningModule), *((callback, pl.Callback) for callback in trainer.callbacks)]
    return not any(
        _overrides(obj, base, hook) for obj, base in owners for hook in hooks if hasattr(base, hook)
    )


def _overrides(obj: object, base: type, hook: str) -> bool:
    fn = getattr(obj, hook)
    return getattr(fn, "__func__", fn) is not getattr(base, hook)


def raise_if_diverged(
    losses: dict[str, float | Tensor], epoch: int, lrs: dict[str, float], clip: str
) -> None:
    """Stop a run whose epoch-mean training losses are not all finite, naming the settings that fix it.

    Every later epoch would only train on NaNs; `lrs` maps each optimizer's config key to its current
    learning rate and `clip` is the family's clipping override, so the message says what to change.
    """
    values = {name: float(value) for name, value in losses.items()}
    if all(math.isfinite(value) for value in values.values()):
        return
    if len(values) == 1:
        ((name, value),) = values.items()
        what = f"{name} became {value}"
    else:
        what = " ".join(f"{name}={value}" for name, value in values.items())
    now = "; ".join(f"{key}, now {lr:.3g}" for key, lr in lrs.items())
    rates = "learning rate" if len(lrs) == 1 else "learning rates"
    raise DivergedError(f"{what} in epoch {epoch}: lower the {rates} ({now}) or clip gradients ({clip})")


def logs_this_step(trainer: pl.Trainer, step: int) -> bool:
    """Whether the values of step `step` (counted from 0) reach the loggers (every `log_every_n_steps`).

    A `self.log` call costs a few percent of a small model's CPU step, so the tasks hand their loss to
    Lightning only on the steps that its logger connector writes out.
    """
    every = trainer.log_every_n_steps
    return bool(trainer.fast_dev_run) or trainer.should_stop or (every > 0 and (step + 1) % every == 0)


def logger_step(trainer: pl.Trainer) -> int:
    """The step the loggers put this moment's values at: one per training batch, whatever the optimizers.

    `global_step` counts optimizer steps, two or more per batch under manual optimization (a GAN's G
    and D); Lightning's logger connector (and its own LearningRateMonitor) use this counter instead,
    so a picture logged at it sits beside the scalars of the same moment.
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped

"""Checkpoints inside an epoch: on a stop signal (SLURM's pre-timeout signal, SIGTERM before a
requeue, Ctrl-C) and every so many minutes or steps, so a long epoch is never lost whole.

A save here is a full Lightning checkpoint written at the end of a training step (the point
Lightning itself restarts from, as `ModelCheckpoint(every_n_train_steps=...)` does), to
`checkpoints/last.ckpt`, which a resume continues from. Beside Lightning's loops and the loader's
place in the epoch (`data.image.ResumableLoader`) it holds what the task has summed over the
epoch so far (its torchmetrics states, and the attributes a task names in `epoch_accumulators`),
so the epoch's `train/*` values come out as if it had never stopped.

A signal only sets a flag: the step that is running finishes, its values are logged, the checkpoint
is written, and the run stops before the next step, with the exit it would have had (Ctrl-C's
message, submitit's requeue for SLURM's signal). A second Ctrl-C stops at once. The epoch's last
step is never a save point (Lightning's restart there would skip the epoch's validation): a stop
asked for then happens one step into the next epoch. Under DDP rank 0 decides, and every rank
saves and stops at the same step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightsuite.errors import ConfigError
from lightsuite.launch.slurm_task import in_slurm_task

STATE_KEY = "lightsuite_mid_epoch"


def _distributed(trainer: pl.Trainer) -> bool:
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


class MidEpochCheckpoint(Checkpoint):
    """Saves `<dirpath>/<filename>.ckpt` inside an epoch: when a stop signal arrives (then stops),
    every `every_n_minutes` of training and every `every_n_steps` optimizer steps (null: never)."""

    def __init__(
        self,
        dirpath: str | os.PathLike,
        filename: str = "last",
        every_n_minutes: float | None = None,
        every_n_steps: int | None = None,
    ) -> None:
        if every_n_minutes is not None and not every_n_minutes > 0:
            raise ConfigError(
                f"callbacks.mid_epoch_checkpoint.every_n_minutes={every_n_minutes} must be a positive "
                "number of minutes, or null for no timed checkpoints"
            )
        if every_n_steps is not None and (
            isinstance(every_n_steps, bool) or int(every_n_steps) != every_n_steps or every_n_steps < 1
        ):
            raise ConfigError(
                f"callbacks.mid_epoch_checkpoint.every_n_steps={every_n_steps} must be a positive whole "
                "number of steps, or null for none"
            )
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_s = None if every_n_minutes is None else float(every_n_minutes) * 60
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.saved_step: int | None = None  # global step of the latest save here, if any
        self._requested: int | None = None  # the stop signal received, if any
        self._stop_now: int | None = None  # the signal to stop for before the next step
        self._handlers: dict[int, Any] = {}
        self._last_save = time.monotonic()
        self._saving = False
        self._pending: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] = []

    # --- signals -------------------------------------------------------------------------------------
    def _signals(self) -> list[int]:
        sigs = [signal.SIGINT, signal.SIGTERM]
        if in_slurm_task():
            sigs.append(signal.SIGUSR2)  # submitit's pre-timeout signal (its handler requeues)
        return sigs

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._requested == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once, as without this callback
        if self._requested is None:
            self._requested = signum
            how = "; Ctrl-C again to stop at once" if signum == signal.SIGINT else ""
            print(
                f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping{how}",
                file=sys.stderr,
                flush=True,
            )

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._handlers:
            return
        for signum in self._signals():
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._handlers = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_save = time.monotonic()
        self._install()
        if self._pending is not None:
            state = self._pending
            if "ranks" in state:
                ranks = state["ranks"]
                # another number of ranks: the saved shares cannot be redistributed; rank 0's is kept
                state = ranks[trainer.global_rank] if len(ranks) == trainer.world_size else ranks[0]
            _load_accumulators(pl_module, state)
            _load_loader_states(trainer, self._loader_states)
            self._pending, self._loader_states = None, []

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        handlers, requested = dict(self._handlers), self._requested
        self._restore()
        if requested is not None and self._stop_now is None:
            # fit ended before a save point came: the signal gets its usual handling now
            handler = handlers.get(requested)
            if callable(handler):
                handler(requested, None)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    # --- saving --------------------------------------------------------------------------------------
    def _decide(self, trainer: pl.Trainer) -> tuple[bool, bool]:
        """(stop, save) for this step, rank 0's answer on every rank."""
        stop = self._requested is not None
        timed = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        counted = self.every_n_steps is not None and trainer.global_step % self.every_n_steps == 0
        if _distributed(trainer):
            flags = torch.tensor([stop, timed], dtype=torch.int32, device=trainer.strategy.root_device)
            torch.distributed.broadcast(flags, src=0)
            stop, timed = bool(flags[0]), bool(flags[1])
        return stop, stop or timed or counted

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._maybe_save(trainer, *self._decide(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a validation inside the epoch (`val_check_interval`): the other checkpoint callbacks have just
        # rewritten last.ckpt without this state, so a save of this step is written again (this runs
        # after them: Lightning calls checkpoint callbacks last, in order), and a stop asked for
        # during the validation is taken here
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        stop, _ = self._decide(trainer)
        self._maybe_save(trainer, stop, stop or self.saved_step == trainer.global_step)

    def _maybe_save(self, trainer: pl.Trainer, stop: bool, save: bool) -> None:
        if not save or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self.save(trainer, "stop signal" if stop else "interval")
        if stop:
            self._stop_now = self._requested if self._requested is not None else signal.SIGTERM

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._stop_now is None:
            return
        signum, handler = self._stop_now, self._handlers.get(self._stop_now)
        self._restore()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == getattr(signal, "SIGUSR2", None) and callable(handler):
            handler(signum, None)  # submitit: requeue the job and exit (rank 0; the others return)
            # the other ranks wait in their next collective until the requeue stops the job: one that
            # left first would break rank 0's way out with a gloo error, which would count as a failure
            self._stop_now = self._requested = None
            return
        raise SIGTERMException()

    def save(self, trainer: pl.Trainer, why: str) -> Path:
        """Write the checkpoint atomically (a kill during the write leaves the previous one)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._saving = True
        try:
            trainer.save_checkpoint(tmp)
        finally:
            self._saving = False
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
            progress = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            print(
                f"saved {self.path} at step {trainer.global_step} (epoch {trainer.current_epoch}, "
                f"batch {progress} of {trainer.num_training_batches}; {why})",
                file=sys.stderr,
                flush=True,
            )
        trainer.strategy.barrier("mid_epoch_checkpoint")
        self.saved_step = trainer.global_step
        self._last_save = time.monotonic()
        return self.path

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self._saving:
            return
        own = _accumulators(pl_module)
        if _distributed(trainer):
            # each rank has summed its own share of the epoch; every rank saves (rank 0 writes)
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, own)
            checkpoint[STATE_KEY] = {"ranks": ranks}
        else:
            checkpoint[STATE_KEY] = own

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # only a checkpoint saved here is inside an epoch: an epoch-end one starts the next epoch afresh
        self._pending = checkpoint.get(STATE_KEY)
        # Lightning hands these to the loaders only when it builds them after restoring, which a task
        # asking `estimated_stepping_batches` in `configure_optimizers` prevents: they are set here
        fit_state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._loader_states = list(fit_state.get("combined_loader", []))


def _accumulators(module: pl.LightningModule) -> dict[str, Any]:
    """What the task has summed over the epoch so far: every torchmetrics state, and its own sums."""
    from torchmetrics import Metric

    metrics = {}
    for name, metric in module.named_modules():
        if isinstance(metric, Metric):
            states = {attr: _on_host(getattr(metric, attr)) for attr in metric._defaults}
            metrics[name] = {"states": states, "updates": int(metric._update_count)}
    own = {name: _on_host(getattr(module, name)) for name in getattr(module, "epoch_accumulators", ())}
    return {"metrics": metrics, "task": own}


def _on_host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):
        return [_on_host(v) for v in value]
    return value


def _load_accumulators(module: pl.LightningModule, state: dict[str, Any]) -> None:
    from torchmetrics import Metric

    named = dict(module.named_modules())
    for name, saved in state.get("metrics", {}).items():
        metric = named.get(name)
        if not isinstance(metric, Metric):
            continue
        device = metric.device
        for attr, value in saved["states"].items():
            if isinstance(value, torch.Tensor):
                value = value.to(device)
            elif isinstance(value, list):
                value = [v.to(device) if isinstance(v, torch.Tensor) else v for v in value]
            setattr(metric, attr, value)
        metric._update_count = saved["updates"]
        metric._computed = None
    device = module.device
    for name, value in state.get("task", {}).items():
        setattr(module, name, value.to(device) if isinstance(value, torch.Tensor) else value)


def _load_loader_states(trainer: pl.Trainer, states: list[dict[str, Any]]) -> None:
    """Put each training loader (`ResumableLoader`) back at its place in the epoch, before its first batch."""
    from lightsuite.data.image import ResumableLoader

    combined = trainer.fit_loop._combined_loader
    loaders = [
        dl for dl in (combined.flattened if combined is not None else []) if isinstance(dl, ResumableLoader)
    ]
    for loader, state in zip(loaders, states, strict=False):
        loader.load_state_dict(state)

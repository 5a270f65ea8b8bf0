"""Auto-resume that continues a run exactly as if it had never stopped.

A job whose run dir already holds `checkpoints/last.ckpt` (a killed run started again with the
same `hydra.run.dir`, a SLURM job requeued after preemption) resumes from it. Lightning restores
weights, optimizer, schedule, epoch and step; `RandomStates` adds the Python, NumPy and torch
random states, so augmentation draws continue where they stopped (the data order is fixed by
seed and epoch in the samplers).

A checkpoint that already stands where this run's trainer settings would stop (its epochs or
steps reached, or early stopping ended it) has nothing left to train: the re-run of a finished
run returns that run's `metrics.json` (`finished_run`), or, with no `metrics.json` of its own
(killed while testing, a `ckpt_path` from elsewhere), fits nothing and tests again with the fit's
metrics kept in the checkpoint. A run with more to train than its checkpoint resumes; its lr
schedule is refitted to the new length (`tasks/schedules.py`).

A resume is refused before any work when its checkpoint is of another task or network
(`check_resumable`); an interrupted run says how to resume it (`interrupts_explained`).
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from lightsuite.errors import ConfigError, RunInterrupted
from lightsuite.launch.slurm_task import in_slurm_task, slurm_job_id
from lightsuite.run.budget import budget_seconds
from lightsuite.run.checkpoints import check_task, checkpoint_record, load_checkpoint, same_target
from lightsuite.run.preemption import STATE_KEY as MID_EPOCH_KEY
from lightsuite.run.preemption import MidEpochCheckpoint
from lightsuite.tasks.schedules import schedule_ended


@rank_zero_only
def keep_logged_epochs(loggers: list[Logger], epoch: int, step: int | None = None) -> None:
    """Keep a resumed run's CSV log of the epochs its checkpoint holds (0..`epoch`).

    CSVLogger deletes `metrics.csv` when it starts in a dir that has one, so a resumed run lost the
    rows of every epoch before the stop. The rows after the checkpoint's epoch (the epoch the stop
    cut short) are dropped: the resumed run logs them again, so each epoch appears once, as in a
    run that never stopped. A checkpoint from inside epoch `epoch` (run/preemption.py) keeps that
    epoch's rows up to its logger `step`. Call before anything is logged.
    """
    for lg in loggers:
        if not isinstance(lg, CSVLogger):
            continue
        path = Path(lg.log_dir) / "metrics.csv"
        tmp = path.with_name(path.name + ".kept")
        source = path if path.is_file() else tmp  # a resume killed while it rewrote the file
        if not source.is_file():
            continue
        with source.open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = sorted(reader.fieldnames or []), list(reader)
        done = [i for i, row in enumerate(rows) if _logged_before(row, epoch, step)]
        if source == path:
            with tmp.open("w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=header)  # the column order the writer appends in
                out.writeheader()
                out.writerows(rows[: done[-1] + 1] if done else [])
        writer = lg.experiment  # starting the writer deletes metrics.csv: the kept rows replace it
        writer.metrics_keys = header
        tmp.replace(path)


@rank_zero_only
def keep_logged_wandb_steps(loggers: list[Logger], epoch: int, step: int | None = None) -> None:
    """Trim an offline W&B run's earlier segments to what the checkpoint holds, as the CSV log is.

    Each segment of an offline run writes its own `offline-run-*` folder under the one run id, and
    `wandb sync` appends the folders' rows in time order: the killed segment's rows after the
    checkpoint (logged again by this resumed segment) would reach the run twice. Those rows are
    dropped from the earlier folders (`run/wandb_offline.py`), by `keep_logged_epochs`' rule on
    each row's `trainer/global_step` and `epoch`. Call before anything is logged.
    """
    from lightsuite.run.wandb_offline import trim_offline_runs

    def covered(history: Any) -> bool:
        keys = {"trainer/global_step": "step", "epoch": "epoch"}  # as the CSV row names them
        row = {keys[k]: i.value_json for i in history.item if (k := i.key or "/".join(i.nested_key)) in keys}
        return _logged_before(row, epoch, step)

    for lg in loggers:
        if not isinstance(lg, WandbLogger) or not getattr(lg, "_offline", False) or not lg.save_dir:
            continue
        live = getattr(lg._experiment, "settings", None)  # the folder this segment writes, if started
        live_dir = Path(live.sync_dir) if live is not None and getattr(live, "sync_dir", None) else None
        trim_offline_runs(Path(lg.save_dir) / "wandb", str(lg.version), covered, live_dir)


def _logged_before(row: Mapping[str, str], epoch: int, step: int | None) -> bool:
    """Whether a CSV row was logged before the checkpoint: up to its epoch (`step` None: the
    checkpoint closed its epoch), or up to its logger step (a mid-epoch checkpoint; rows without an
    epoch, such as the learning rates', count by their step too)."""
    if step is not None:
        return bool(row.get("step")) and float(row["step"]) <= step
    return bool(row.get("epoch")) and float(row["epoch"]) <= epoch


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """`ckpt_path` if given, else this run dir's `last.ckpt` when `auto_resume` is on and it exists."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not cfg.get("auto_resume", True) or not last.is_file():
        return None
    return str(last)


@rank_zero_only
def announce_resume(cfg: DictConfig, path: str) -> None:
    """Say that this run dir's own `last.ckpt` is continued (a given `ckpt_path` is no surprise)."""
    if not cfg.get("ckpt_path"):
        print(f"resuming from {path} (auto_resume=false starts over)", file=sys.stderr)


@dataclass(frozen=True)
class Checkpointed:
    """Where a checkpoint's run stood when it was saved: what deciding a resume needs."""

    path: str
    epoch: int  # the epoch it was saved in (0-based)
    epochs_done: int  # epochs whose training had ended
    global_step: int
    stopped: bool = False  # the run stopped itself there (early stopping)
    fit_metrics: dict[str, float] = field(default_factory=dict)
    schedule_end: str | None = None  # why its lr schedule cannot be stretched, if it cannot
    stopped_by: str | None = None  # "max_time" or "early_stopping", when `stopped`
    train_seconds: float = 0.0  # training time spent up to it, all segments (`trainer.max_time`'s count)
    mid_epoch: bool = False  # saved inside its epoch (run/preemption.py)
    logged_step: int = -1  # the logger step of its last training step

    @classmethod
    def read(cls, ckpt: Mapping[str, Any], path: str) -> Checkpointed:
        record = ckpt.get("lightsuite") or {}
        epoch = int(ckpt.get("epoch", -1))
        progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        schedules = ckpt.get("lr_schedulers") or []
        epoch_loop = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
        timer = (ckpt.get("callbacks") or {}).get("Timer", {})
        return cls(
            path=path,
            epoch=epoch,
            epochs_done=int(progress.get("processed", epoch + 1)),
            global_step=int(ckpt.get("global_step", 0)),
            stopped=bool(record.get("stopped", False)),
            stopped_by=record.get("stopped_by"),
            train_seconds=float(timer.get("time_elapsed", {}).get("train", 0.0)),
            fit_metrics=dict(record.get("fit_metrics", {})),
            schedule_end=next(filter(None, map(schedule_ended, schedules)), None),
            mid_epoch=MID_EPOCH_KEY in ckpt,
            logged_step=int(epoch_loop.get("_batches_that_stepped", -1)),
        )


def reached_end(
    saved: Checkpointed, max_epochs: int | None, max_steps: int | None, max_time: Any = None
) -> str | None:
    """Why a fit with these limits has nothing left to train from `saved` (None: it trains on).

    The limits are read as Lightning reads them: -1 is no limit, and `max_epochs=None` is 1000
    unless a step budget is set. A run early stopping ended stays ended, whatever the limits; one
    its `trainer.max_time` ended trains on with a larger budget (or none).
    """
    max_steps = -1 if max_steps is None else max_steps
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 else -1
    if saved.stopped and saved.stopped_by == "max_time":
        budget = budget_seconds(max_time)
        if budget is not None and saved.train_seconds >= budget:
            return f"trainer.max_time={max_time} was spent ({saved.train_seconds:.0f} s of training)"
    elif saved.stopped:
        return f"early stopping ended it in epoch {saved.epoch}"
    if max_epochs != -1 and saved.epochs_done >= max_epochs:
        return f"{saved.epochs_done} of trainer.max_epochs={max_epochs} epochs done"
    if max_steps != -1 and saved.global_step >= max_steps:
        return f"{saved.global_step} of trainer.max_steps={max_steps} steps done"
    return None


def finished_run(cfg: DictConfig, saved: Checkpointed) -> tuple[str | None, dict[str, float] | None]:
    """Whether the resumed run is already over, and, when its own `metrics.json` says how, its metrics.

    Returns (why it is over or None, the metrics of this run dir's `metrics.json` or None). The
    file counts only when the checkpoint is this run dir's and the file was written after it (the
    test stage of the fit that saved it). A run with more to train whose lr schedule has ended is
    refused here, before any work.
    """
    max_time = cfg.trainer.get("max_time")
    if isinstance(max_time, DictConfig):
        max_time = OmegaConf.to_container(max_time)
    over = reached_end(saved, cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps"), max_time)
    if over is None:
        if saved.schedule_end:
            raise ConfigError(
                f"cannot train {saved.path} on: {saved.schedule_end}, so a longer run has no schedule "
                "left to stretch; start the run over with the new length (auto_resume=false, or a new "
                "hydra.run.dir)"
            )
        return None, None
    run_dir = Path(cfg.paths.output_dir).resolve()
    metrics, ckpt = run_dir / "metrics.json", Path(saved.path).resolve()
    if ckpt.parent.parent != run_dir or not metrics.is_file():
        return over, None
    if metrics.stat().st_mtime_ns < ckpt.stat().st_mtime_ns:
        return over, None
    values = json.loads(metrics.read_text())
    _say_finished(run_dir, over)
    return over, {k: (math.nan if v is None else float(v)) for k, v in values.items()}


@rank_zero_only
def _say_finished(run_dir: Path, over: str) -> None:
    print(
        f"{run_dir} has finished ({over}): its metrics.json is returned, nothing is trained or tested "
        "(auto_resume=false starts it over)",
        file=sys.stderr,
    )


class RandomStates(pl.Callback):
    """Keeps the random states in each checkpoint and restores them when training continues.

    Saved with the checkpoint (after an epoch's validation) and put back at the start of the next
    training epoch (of the rest of the epoch, for a mid-epoch checkpoint), the point where the
    uninterrupted run went on with the same states: the
    sanity check and loader set-up of a resumed fit would otherwise consume draws first. Under DDP
    every rank's states are gathered into the checkpoint and each rank gets its own back (ranks
    draw different augmentations). Stored as plain lists and tensors, so
    `torch.load(weights_only=True)` reads them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        own = _own_states()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * torch.distributed.get_world_size()
            # every rank saves each checkpoint (only rank 0 writes it): a collective is safe here
            torch.distributed.all_gather_object(ranks, own)
            return {"ranks": ranks}
        return own

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a fit restarted inside an epoch (run/preemption.py) calls no `on_train_epoch_start` there
        if trainer.fit_loop.restarted_mid_epoch:
            self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if "ranks" in state:
            ranks = state["ranks"]
            # another number of ranks than saved them: each continues from a saved state, not its own
            state = ranks[trainer.global_rank] if len(ranks) == trainer.world_size else ranks[0]
        version, py_state, gauss = state["python"]
        random.setstate((version, tuple(py_state), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])


def _own_states() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU (and current CUDA device) random states."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": [version, list(state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # this rank's device (GPU augmentation draws here)
    return states


def check_resumable(cfg: DictConfig, ckpt_path: str) -> Checkpointed:
    """Refuse, before any work, a checkpoint that is missing, unreadable or of another task or network.

    Returns where its run stood when it was saved.
    """
    ckpt = load_checkpoint(ckpt_path)
    record = checkpoint_record(ckpt, ckpt_path)
    check_task(record, cfg.task._target_, ckpt_path)
    trained = record["config"].get("model", {}).get("_target_")
    if trained and not same_target(trained, cfg.model._target_):
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds a {trained.rsplit('.', 1)[-1]} network, but model= builds "
            f"{cfg.model._target_.rsplit('.', 1)[-1]}; pass the same model= as the run that wrote it"
        )
    return Checkpointed.read(ckpt, ckpt_path)


@contextmanager
def interrupts_explained(trainer: pl.Trainer, cfg: DictConfig) -> Iterator[None]:
    """Turn Ctrl-C (Lightning catches it and exits) into one line that says how to resume."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not trainer.interrupted:
            raise
        last = _last_checkpoint(trainer)
        where = f"epoch {trainer.current_epoch}"
        if last and _mid_epoch_saved(trainer):
            where += f" at step {trainer.global_step}"
        if in_slurm_task():
            # preempted, requeued, cancelled or out of time: a requeued job resumes by itself
            resumes = f"from {last}" if last else "from the start (no epoch had finished)"
            raise RunInterrupted(
                f"SLURM stopped job {slurm_job_id()} in {where}; if it is requeued it resumes {resumes}"
            ) from None
        sweep_dir = _sweep_dir()
        if sweep_dir is not None:
            # a job of a sweep (an Optuna trial too): the sweep resumes every job from its own run dir
            how = f"resume the sweep with the same command plus hydra.sweep.dir={sweep_dir}"
        elif last:
            how = f"resume with the same command plus ckpt_path={last}"
        else:
            how = "no checkpoint was saved yet: run the command again"
        raise RunInterrupted(f"interrupted in {where}; {how}") from None


def _sweep_dir() -> Path | None:
    """This multirun job's sweep dir: its run dir less `hydra.sweep.subdir` (None outside a multirun)."""
    from lightsuite.launch.ddp import in_multirun

    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    run_dir, subdir = Path(hydra_cfg.runtime.output_dir), Path(str(hydra_cfg.sweep.subdir))
    depth = len(subdir.parts)
    return Path(*run_dir.parts[:-depth]) if depth and run_dir.parts[-depth:] == subdir.parts else None


def _mid_epoch_saved(trainer: pl.Trainer) -> bool:
    """Whether the latest checkpoint was saved inside the epoch the run stopped in, at its last step."""
    return any(
        isinstance(cb, MidEpochCheckpoint) and cb.saved_step == trainer.global_step
        for cb in trainer.callbacks
    )


def _last_checkpoint(trainer: pl.Trainer) -> str:
    """The latest checkpoint ('' before the first): what a resume continues (a mid-epoch one, or the
    latest finished epoch's)."""
    for callback in trainer.callbacks:
        if isinstance(callback, MidEpochCheckpoint) and callback.saved_step == trainer.global_step:
            return str(callback.path)
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "last_model_path", "")
        if not path and not getattr(callback, "monitor", None):
            path = getattr(callback, "best_model_path", "")  # a monitor-less callback keeps the latest
        if path:
            return path
    return ""


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The best checkpoint of this fit, or None (test the weights in memory) when none was kept.

    Only a checkpoint callback with a `monitor` knows a best; `last_checkpoint` has none.
    """
    monitored = [cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)]
    if trainer.fast_dev_run or not monitored or not monitored[0].best_model_path:
        return None
    best = monitored[0].best_model_path
    if not Path(best).is_file():  # the run resumed from another dir's checkpoint, whose files went
        raise ConfigError(
            f"the best checkpoint of this fit, {best}, is gone (moved or deleted): put it back, "
            "or test the last weights with lightsuite-eval ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    return best

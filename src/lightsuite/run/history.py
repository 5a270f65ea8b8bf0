"""`history.jsonl`: every epoch's logged values in the run dir, whatever the loggers.

The report draws its curves from the run dir; with `logger=wandb`, `tensorboard` or `mlflow` there
is no `csv/metrics.csv` to draw from, so the suite keeps its own record. One JSON line per training
epoch, `{"epoch": 0, "step": 49, "val/acc": 0.91, "train/loss_epoch": 0.31, ...}`, appended and
flushed when the epoch ends (nothing is done per step). `step` is the logger step Lightning writes
the epoch's values at, so a line lines up with the CSV logger's rows.

What a line holds: the values logged during that epoch (validation and epoch means). A per-step
value (`train/loss`, the last logged batch; the learning rates) is left out: the CSV logger keeps
the per-step series, and the report draws the epoch mean `train/loss_epoch` where it has no CSV.
A resumed run rewinds the file to the epochs its checkpoint holds (as `run/resume.py` does for the
CSV logger; a mid-epoch checkpoint's epoch is written when it ends), so each epoch appears once.
A SIGKILL between an epoch's checkpoint and its line loses that line; the CSV logger, which writes
every 100 steps, loses more.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from lightsuite.run.preemption import STATE_KEY as MID_EPOCH_KEY

HISTORY_FILE = "history.jsonl"


class EpochHistory(Checkpoint):
    """Appends each epoch's logged values to `<dirpath>/history.jsonl` (rank 0).

    A `Checkpoint` only for the order Lightning calls it in: its epoch-end hook runs after the task's
    own `on_train_epoch_end` (where the tasks log their epoch means), as Lightning does for
    checkpoint callbacks. It saves no checkpoint.
    """

    def __init__(self, dirpath: str | os.PathLike) -> None:
        self.path = Path(dirpath) / HISTORY_FILE
        self._before: dict[str, Any] = {}
        # where the checkpoint a fit resumes from stood: its epoch, and its logger step if mid-epoch
        self._restored: tuple[int, int | None] | None = None
        self._last_kept = -1

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
        step = int(loop.get("_batches_that_stepped", -1)) if MID_EPOCH_KEY in checkpoint else None
        self._restored = (int(checkpoint.get("epoch", -1)), step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            # a new fit keeps nothing of an earlier run into this dir; a resume what its checkpoint holds
            epoch, step = self._restored or (-1, None)
            self._last_kept = keep_logged(self.path, epoch, step)
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # what was logged before this epoch: a value still the same object was not logged again
        self._before = dict(trainer.callback_metrics)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resume from a checkpoint saved at its epoch's validation ends that epoch again: kept already
        if not trainer.is_global_zero or trainer.current_epoch <= self._last_kept:
            return
        logged = {k: v for k, v in trainer.callback_metrics.items() if self._before.get(k) is not v}
        row = epoch_row(logged, trainer.current_epoch, trainer.fit_loop.epoch_loop._batches_that_stepped - 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def epoch_row(logged: dict[str, Any], epoch: int, step: int) -> dict[str, Any]:
    """One line of the file: the epoch, the logger step, and each scalar value logged in the epoch.

    Per-step values are left out: one whose epoch mean is logged beside it (`x` and `x_epoch`),
    Lightning's `x_step` twins and the learning rates of `LearningRateMonitor` (`lr-SGD`, logged
    every `log_every_n_steps`, so only in some epochs). A non-finite value is written as null.
    """
    values: dict[str, float | None] = {}
    for key, value in logged.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if f"{key}_epoch" in logged or key.endswith("_step") or key.startswith("lr-"):
            continue
        values[key] = float(value) if math.isfinite(value) else None
    return {"epoch": epoch, "step": step, **dict(sorted(values.items()))}


def keep_logged(path: Path, epoch: int, step: int | None = None) -> int:
    """Keep the lines a checkpoint holds, atomically, and return the last epoch kept (-1: none).

    The rule of `run/resume.py`'s `keep_logged_epochs` for the CSV log: the epochs up to the
    checkpoint's `epoch`, or, for a checkpoint from inside its epoch, the lines up to its logger
    `step`. The rest is trained (and written) again.
    """
    if not path.is_file():
        return -1
    kept, last = [], -1
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if not (
            isinstance(row, dict) and isinstance(row.get("epoch"), int) and isinstance(row.get("step"), int)
        ):
            continue
        if (row["step"] <= step) if step is not None else (row["epoch"] <= epoch):
            kept.append(line + "\n")
            last = max(last, row["epoch"])
    tmp = path.with_name(path.name + ".kept")
    tmp.write_text("".join(kept))
    tmp.replace(path)
    return last

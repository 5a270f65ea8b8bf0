"""Auto-resume that continues a run exactly as if it had never stopped.

A job whose run dir already holds `checkpoints/last.ckpt` (a killed run started again with the
same `hydra.run.dir`, a SLURM job requeued after preemption) resumes from it. Lightning restores
weights, optimizer, schedule, epoch and step; `RandomStates` adds the Python, NumPy and torch
random states, so augmentation draws continue where they stopped (the data order is fixed by
seed and epoch in the samplers).
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.utilities import rank_zero_only


@rank_zero_only
def keep_logged_epochs(loggers: list[Logger], epoch: int) -> None:
    """Keep a resumed run's CSV log of the epochs its checkpoint holds (0..`epoch`).

    CSVLogger deletes `metrics.csv` when it starts in a dir that has one, so a resumed run lost the
    rows of every epoch before the stop. The rows after the checkpoint's epoch (the epoch the stop
    cut short) are dropped: the resumed run logs them again, so each epoch appears once, as in a
    run that never stopped. Call before anything is logged.
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
        done = [i for i, row in enumerate(rows) if row.get("epoch") and float(row["epoch"]) <= epoch]
        if source == path:
            with tmp.open("w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=header)  # the column order the writer appends in
                out.writeheader()
                out.writerows(rows[: done[-1] + 1] if done else [])
        writer = lg.experiment  # starting the writer deletes metrics.csv: the kept rows replace it
        writer.metrics_keys = header
        tmp.replace(path)


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """`ckpt_path` if given, else this run dir's `last.ckpt` when `auto_resume` is on and it exists."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not cfg.get("auto_resume", True) or not last.is_file():
        return None
    _announce(last)
    return str(last)


@rank_zero_only
def _announce(last: Path) -> None:
    print(f"resuming from {last} (auto_resume=false starts over)", file=sys.stderr)


class RandomStates(pl.Callback):
    """Keeps the random states in each checkpoint and restores them when training continues.

    Saved with the checkpoint (after an epoch's validation) and put back at the start of the next
    training epoch, the point where the uninterrupted run went on with the same states: the
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

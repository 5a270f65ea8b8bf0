"""Auto-resume that continues a run exactly as if it had never stopped.

A job whose run dir already holds `checkpoints/last.ckpt` (a killed run started again with the
same `hydra.run.dir`, a SLURM job requeued after preemption) resumes from it. Lightning restores
weights, optimizer, schedule, epoch and step; `RandomStates` adds the Python, NumPy and torch
random states, so augmentation draws continue where they stopped (the data order is fixed by
seed and epoch in the samplers).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only


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
    sanity check and loader set-up of a resumed fit would otherwise consume draws first. Stored as
    plain lists and a tensor, so `torch.load(weights_only=True)` reads them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "python": [version, list(state), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        version, py_state, gauss = state["python"]
        random.setstate((version, tuple(py_state), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])

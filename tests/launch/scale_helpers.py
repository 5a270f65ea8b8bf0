"""Test-only targets that DDP child ranks can import (their PYTHONPATH holds this folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn


class RecordRanks(pl.Callback):
    """Each rank writes what it trains with to `<run dir>/ranks/rank<N>.json` when training starts."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        group = trainer.optimizers[0].param_groups[0]
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "seed": torch.initial_seed(),
            "lr": group.get("initial_lr", group["lr"]),
            "weight_decay": group["weight_decay"],
            "threads": torch.get_num_threads(),
        }
        out = Path(trainer.default_root_dir) / "ranks" / f"rank{trainer.global_rank}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record))


class StepLosses(pl.Callback):
    """Rank 0 writes every step's loss averaged over all ranks (the loss of the global batch)."""

    def __init__(self, path: str) -> None:
        self.path, self.losses = Path(path), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].detach().clone()
        if trainer.world_size > 1:
            torch.distributed.all_reduce(loss)
            loss /= trainer.world_size
        self.losses.append(loss.item())

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            self.path.write_text(json.dumps(self.losses))


class TinyMLP(nn.Module):
    """A network without BatchNorm, whose gradient over a global batch DDP reproduces exactly."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        size = input_shape[0] * input_shape[1] * input_shape[2]
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Stamp(pl.Callback):
    """Writes `<run dir>/stamp.json` as its process exits: the pid, when the process started and
    ended, and the threads and cores it ran with (what a launcher gave the job)."""

    def __init__(self) -> None:
        import os
        import time

        from lightsuite.train import process_age

        self.record = {
            "pid": os.getpid(),
            "start": time.time() - process_age(),
            "threads": torch.get_num_threads(),
            "cores": sorted(os.sched_getaffinity(0)),
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import atexit

        atexit.unregister(self._write)
        atexit.register(self._write, Path(trainer.default_root_dir))

    def _write(self, run_dir: Path) -> None:
        import time

        (run_dir / "stamp.json").write_text(json.dumps({**self.record, "end": time.time()}))

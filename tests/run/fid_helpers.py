"""Test-only targets that DDP child ranks import (their PYTHONPATH holds this folder)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """One digest of a state dict's names and values: equal digests, equal weights."""
    sha = hashlib.sha1()
    for name, tensor in state.items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


class RecordFIDWeights(pl.Callback):
    """Each rank writes the digest of the FID classifier it scores with to `<run dir>/fid_ranks/rank<N>`."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = Path(trainer.default_root_dir) / "fid_ranks" / f"rank{trainer.global_rank}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(weights_digest(pl_module.evaluation.feature_net.net.state_dict()))

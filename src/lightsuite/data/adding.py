"""The adding problem (Hochreiter & Schmidhuber 1997): a long-lag task that separates LSTMs from plain RNNs.

Each sequence has `seq_len` steps of two inputs: a value drawn uniformly from [0, 1] and a marker
that is 1 at exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the
two marked values, known only after the last step; always predicting its mean, 1.0, gives an MSE
of 1/6 ≈ 0.167. Every split is drawn from its own stream of one seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightsuite.data.batches import ResidentDataModule, loader
from lightsuite.errors import ConfigError


def adding_problem(num: int, seq_len: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Inputs (num, seq_len, 2) and targets (num, 1)."""
    values = rng.uniform(0.0, 1.0, size=(num, seq_len))
    half = seq_len // 2
    first = rng.integers(0, half, size=num)
    second = rng.integers(half, seq_len, size=num)
    markers = np.zeros((num, seq_len))
    rows = np.arange(num)
    markers[rows, first] = markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    x = np.stack([values, markers], axis=-1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(target[:, None], dtype=torch.float32)


class AddingDataModule(ResidentDataModule):
    """Seeded train/val/test sets of the adding problem, on the training device (data/batches.py)."""

    net_kwargs = {"input_size": 2, "output_size": 1}

    def __init__(
        self,
        seq_len: int = 100,
        num_train: int = 64_000,
        num_val: int = 1000,
        num_test: int = 2000,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        batches_per_step: int = 1,
        device_resident: bool = True,
    ) -> None:
        super().__init__(device_resident)
        if seq_len < 2:
            raise ConfigError(f"data.seq_len={seq_len} must be >= 2 (one marked step in each half)")
        for key, value in (
            ("num_train", num_train),
            ("num_val", num_val),
            ("num_test", num_test),
            ("batch_size", batch_size),
            ("batches_per_step", batches_per_step),
        ):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        self.seq_len, self.seed = seq_len, seed
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.batches_per_step = batches_per_step
        self.sets: dict[str, dict[str, Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        if not self.sets:
            streams = np.random.SeedSequence(self.seed).spawn(3)
            for (name, num), stream in zip(self.sizes.items(), streams, strict=True):
                x, y = adding_problem(num, self.seq_len, np.random.default_rng(stream))
                self.sets[name] = {"x": x, "y": y}
        # on every call: a later fit or test may run on another device
        self.sets = {name: self.place(tensors) for name, tensors in self.sets.items()}

    def train_dataloader(self) -> DataLoader:
        return loader(
            self.sets["train"],
            self.batch_size,
            shuffle=True,
            group=self.batches_per_step,
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader:
        return loader(self.sets["val"], self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return loader(self.sets["test"], self.eval_batch_size)

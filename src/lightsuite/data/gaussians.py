"""Mixtures of 2-D Gaussians: the standard mode-collapse benchmark, generated from a seed (no files).

`ring`: 8 modes evenly spaced on a circle of `radius` 2; `grid`: 25 modes on the 5x5 grid
{-4, -2, 0, 2, 4}^2. Every mode has the same isotropic `std` (0.02) and weight.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightsuite.data.image import (
    BatchIndices,
    ResumableLoader,
    TensorBatches,
    resident_device,
    trainer_device,
)
from lightsuite.errors import ConfigError

LAYOUTS = ("ring", "grid")


def mode_centers(layout: str, radius: float = 2.0) -> Tensor:
    """The (K, 2) mode centres of a layout."""
    if layout == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
    if layout == "grid":
        axis = torch.arange(-4.0, 4.1, 2.0)
        return torch.cartesian_prod(axis, axis)
    raise ConfigError(f"data.layout={layout!r} is not a layout; choose one of: {', '.join(LAYOUTS)}")


class GaussiansDataModule(pl.LightningDataModule):
    """Train/val/test point sets drawn from the mixture; batches are (points, mode index).

    The points are drawn on the host and then held on the training device (`setup`), where each batch
    is an index gather; `device_resident=false` keeps them on the host.
    """

    def __init__(
        self,
        layout: str = "ring",
        radius: float = 2.0,
        std: float = 0.02,
        num_train: int = 65536,
        num_val: int = 2000,
        num_test: int = 2000,
        batch_size: int = 256,
        seed: int = 0,
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        self.modes = mode_centers(layout, radius)  # also validates `layout`
        if not std > 0:
            raise ConfigError(f"data.std={std} must be > 0")
        if not radius > 0:
            raise ConfigError(f"data.radius={radius} must be > 0")
        for key, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be >= 1")
        self.layout, self.std, self.batch_size, self.seed = layout, std, batch_size, seed
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.device_resident = device_resident
        self.sets: dict[str, TensorBatches] = {}

    @property
    def net_kwargs(self) -> dict[str, Any]:
        """A sample is a 2-vector; its class is the mode it was drawn from (`model.conditional=true`)."""
        return {"input_shape": (2,), "num_classes": len(self.modes)}

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`n` points and the index of the mode each was drawn from."""
        labels = torch.randint(len(self.modes), (n,), generator=generator)
        points = self.modes[labels] + self.std * torch.randn(n, 2, generator=generator)
        return points, labels

    def setup(self, stage: str | None = None) -> None:
        if not self.sets:
            # one stream per split, so the size of one split never changes the points of another
            for offset, (split, n) in enumerate(self.sizes.items()):
                gen = torch.Generator().manual_seed(self.seed * 3 + offset)
                self.sets[split] = TensorBatches(*self.sample(n, gen))
        # on every call: a later fit or test may run on another device
        device = resident_device(trainer_device(self), enabled=self.device_resident)
        self.sets = {split: data.to(device) for split, data in self.sets.items()}

    def _loader(self, split: str) -> DataLoader:
        data = self.sets[split]
        train = split == "train"
        sampler = BatchIndices(len(data), self.batch_size, shuffle=train, device=data.device)
        if train:
            return ResumableLoader(data, sampler=sampler, batch_size=None, trainer=self.trainer)
        return DataLoader(data, sampler=sampler, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

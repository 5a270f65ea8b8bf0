"""Random images with random labels: for throughput measurements and smoke tests without data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightsuite.data.image import TensorImageDataModule


class SyntheticImageDataModule(TensorImageDataModule):
    """`num_images` uint8 images of `input_shape` (and a tenth as many test images), seeded."""

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        num_images: int = 12800,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.num_images = num_images
        self.seed = seed

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        n = self.num_images if train else max(1, self.num_images // 10)
        gen = torch.Generator().manual_seed(self.seed + (0 if train else 1))
        images = torch.randint(0, 256, (n, *self.input_shape), generator=gen, dtype=torch.uint8)
        return images, torch.randint(0, self.num_classes, (n,), generator=gen)

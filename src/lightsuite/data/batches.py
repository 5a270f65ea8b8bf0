"""Batches of in-memory tensors for the sequence DataModules, optionally grouped for one Lightning step.

Each batch is one indexing op with an index tensor (no per-sample calls, no collate). For training,
`group` consecutive batches can be handed over together; the sequence tasks take one optimizer
step per batch of the group (see tasks/sequence.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightsuite.data.image import BatchIndices


class DictBatches(Dataset):
    """Equal-length tensors indexed a whole batch (or a list of batches) at a time."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors
        self.size = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if isinstance(index, list):
            return [self[i] for i in index]
        return {key: value[index] for key, value in self.tensors.items()}


class BatchGroups(BatchIndices):
    """`BatchIndices` handed over `group` batches at a time (see tasks/sequence.py for why)."""

    def __init__(self, size: int, batch_size: int, shuffle: bool, group: int, seed: int) -> None:
        super().__init__(size, batch_size, shuffle)
        self.group, self.seed = group, seed
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Optimizer steps per epoch (`len` counts groups, which is what Lightning steps through)."""
        return super().__len__()

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.group)

    def __iter__(self) -> Iterator[list[Tensor]]:
        # each epoch's order comes from (seed, epoch) alone: every DataLoader iterator (a validation
        # run, too) draws from the global generator, so sharing it would tie the training order to
        # how often validation runs, and with it to `batches_per_step`
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        batches = list(order.split(self.batch_size))
        return iter(batches[i : i + self.group] for i in range(0, len(batches), self.group))


def loader(
    tensors: dict[str, Tensor], batch_size: int, shuffle: bool = False, group: int | None = None
) -> DataLoader:
    """Batches of a dict of tensors; with `group`, lists of that many consecutive batches (training)."""
    data = DictBatches(tensors)
    if group is None:
        return DataLoader(data, batch_size=None, sampler=BatchIndices(len(data), batch_size, shuffle))
    sampler = BatchGroups(len(data), batch_size, shuffle, group, seed=torch.initial_seed())
    return DataLoader(data, batch_size=None, sampler=sampler)

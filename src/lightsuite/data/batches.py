"""Batches of in-memory tensors for the sequence DataModules, optionally grouped for one Lightning step.

Each batch is one indexing op with an index tensor (no per-sample calls, no collate). For training,
`group` consecutive batches can be handed over together; the sequence tasks take one optimizer
step per batch of the group (see tasks/sequence.py). Grouped, a training epoch is one gather per
tensor at its first group (`EpochOrder`), each group a slice of its batches.

The sets live on the training device: `ResidentDataModule.setup` moves them there once
(`trainer.strategy.root_device`, each DDP rank its own copy to its own device), each epoch's index
order follows them there, so a batch is a gather on the device, and Lightning's transfer of it is
skipped. The loaders run in the training process (no workers: a gather needs none, and a worker
could not index device tensors); without a trainer, or with `data.device_resident=false`, the sets
stay on the host and Lightning copies each batch as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightsuite.data.image import BatchIndices, ResumableLoader, resident_device, trainer_device


def to_device(tensors: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The same named tensors on `device` (those already there are not copied)."""
    return {key: value.to(device) for key, value in tensors.items()}


class DictBatches(Dataset):
    """Equal-length tensors indexed a whole batch (or a list of batches) at a time."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = tensors
        first = next(iter(tensors.values()))
        self.size, self.device = len(first), first.device

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if isinstance(index, GroupOfEpoch):
            return index.epoch.batches_of(self)[index.start : index.stop]
        if isinstance(index, list):
            # a group: one gather per tensor, split into its batches (views), not one gather per batch
            sizes, indices = [len(part) for part in index], torch.cat(index)
            whole = {key: value[indices].split(sizes) for key, value in self.tensors.items()}
            return [{key: parts[i] for key, parts in whole.items()} for i in range(len(index))]
        return {key: value[index] for key, value in self.tensors.items()}


class EpochOrder:
    """One epoch's batches of indices, and the set gathered in that order once, at its first group.

    A training epoch of a sequence DataModule is then one gather per tensor and each group a slice of
    a list of views: the same values as a gather per group (which costs a few tensor ops per tensor
    per Lightning step), for one extra copy of the training set while the epoch runs.
    """

    def __init__(self, order: Tensor, batch_size: int) -> None:
        self.order, self.batch_size = order, batch_size
        self._gathered: tuple[Any, list[dict[str, Tensor]]] | None = None

    def batches_of(self, data: DictBatches) -> list[dict[str, Tensor]]:
        """Every batch of the epoch from `data` (gathered at the first call for that dataset)."""
        if self._gathered is None or self._gathered[0] is not data:
            whole = {key: value[self.order].split(self.batch_size) for key, value in data.tensors.items()}
            count = len(next(iter(whole.values())))
            self._gathered = (data, [{key: parts[i] for key, parts in whole.items()} for i in range(count)])
        return self._gathered[1]


class GroupOfEpoch:
    """The batches `start:stop` of an `EpochOrder`: what `BatchGroups` hands the dataset per step."""

    def __init__(self, epoch: EpochOrder, start: int, stop: int) -> None:
        self.epoch, self.start, self.stop = epoch, start, stop

    def __len__(self) -> int:
        return self.stop - self.start


class BatchGroups(BatchIndices):
    """`BatchIndices` handed over `group` batches at a time (see tasks/sequence.py for why)."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        group: int,
        seed: int,
        device: torch.device | None = None,
    ) -> None:
        super().__init__(size, batch_size, shuffle, device=device)
        self.group, self.seed = group, seed
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Optimizer steps per epoch (`len` counts groups, which is what Lightning steps through)."""
        return super().__len__()

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.group)

    def __iter__(self) -> Iterator[GroupOfEpoch]:
        # each epoch's order comes from (seed, epoch) alone: every DataLoader iterator (a validation
        # run, too) draws from the global generator, so sharing it would tie the training order to
        # how often validation runs, and with it to `batches_per_step`
        # a generator: the order is drawn at the first group, after Lightning's set_epoch (a resumed fit
        # creates its first iterator before it restores the epoch)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        # drawn on the host (the same order on every device), then moved once per epoch, beside the data
        epoch = EpochOrder(order.to(self.device), self.batch_size)
        count = math.ceil(len(order) / self.batch_size)
        starts = range(0, count, self.group)
        yield from self._remaining([GroupOfEpoch(epoch, i, min(i + self.group, count)) for i in starts])


def _as_drawn(batch: Any) -> Any:
    # the dataset's gathers are the batch: `default_convert` would only walk it
    return batch


def loader(
    tensors: dict[str, Tensor],
    batch_size: int,
    shuffle: bool = False,
    group: int | None = None,
    trainer: pl.Trainer | None = None,
) -> DataLoader:
    """Batches of a dict of tensors; with `group`, lists of that many consecutive batches (training,
    resumable mid-epoch through `trainer`'s progress: see `ResumableLoader`)."""
    data = DictBatches(tensors)
    if group is None:
        sampler = BatchIndices(len(data), batch_size, shuffle, device=data.device)
        return DataLoader(data, batch_size=None, sampler=sampler, collate_fn=_as_drawn)
    sampler = BatchGroups(len(data), batch_size, shuffle, group, torch.initial_seed(), data.device)
    return ResumableLoader(data, batch_size=None, sampler=sampler, collate_fn=_as_drawn, trainer=trainer)


class ResidentDataModule(pl.LightningDataModule):
    """Base of the DataModules whose sets are dicts of tensors: kept on the training device.

    A subclass builds its sets in `setup` and passes each through `place`, on every call (a later
    fit or test may run on another device).
    """

    def __init__(self, device_resident: bool = True) -> None:
        super().__init__()
        self.device_resident = device_resident
        self.data_device = torch.device("cpu")

    def place(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """`tensors` where this DataModule's batches are gathered (see the module docstring)."""
        self.data_device = resident_device(trainer_device(self), 0, self.device_resident)
        return to_device(tensors, self.data_device)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device == self.data_device:
            # gathered there already: Lightning's walk over every tensor of the group would copy nothing
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

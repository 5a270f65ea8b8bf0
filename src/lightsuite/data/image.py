"""The shared base of the image-classification DataModules.

Batches leave the DataLoader as raw pixels (uint8, or floats in [0, 1]); scaling, augmentation and
per-channel normalization happen in `on_after_batch_transfer`, on the training device, as a few
tensor ops per batch.

Sets held as tensors (`TensorBatches`: digits, the synthetic images, the Gaussians, and MNIST and
CIFAR, which torchvision reads whole into memory) are moved once, in `setup`, to the training device
(`trainer.strategy.root_device`, each DDP rank its own copy to its own device), so that a batch is an
index gather there and Lightning's transfer finds it already in place. They stay on the host without a
trainer, with `device_resident=false`, and with `num_workers > 0` (a worker process cannot index CUDA
tensors; there the host tensors are indexed in workers and pinned). Image folders decode files in
workers and stay on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightsuite.data.augment import random_crop, random_hflip
from lightsuite.errors import ConfigError


class TensorBatches(Dataset):
    """Images and labels held as tensors, indexed a whole batch at a time.

    Paired with `BatchIndices` as the loader's sampler (and `batch_size=None`), each batch is one
    indexing op with an index tensor instead of `batch_size` calls and a collate.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device) -> TensorBatches:
        """The same set on `device` (itself where it is there already: no copy)."""
        if self.images.device == device and self.labels.device == device:
            return self
        return TensorBatches(self.images.to(device), self.labels.to(device))


def resident_device(
    trainer_device: torch.device | None, num_workers: int = 0, enabled: bool = True
) -> torch.device:
    """Where an in-memory set lives: on the training device when this process indexes it, else the host.

    No trainer (a loader built by hand) or `enabled=False` keeps the host; so does `num_workers > 0`,
    since a DataLoader worker cannot index CUDA tensors.
    """
    if trainer_device is None or not enabled or num_workers > 0:
        return torch.device("cpu")
    return torch.device(trainer_device)


def trainer_device(module: pl.LightningDataModule) -> torch.device | None:
    """The training device of the trainer `module` is attached to, if any (each DDP rank its own)."""
    trainer = module.trainer
    return None if trainer is None else trainer.strategy.root_device


class BatchIndices(DistributedSampler):
    """Index tensors of this rank's share of each batch, in an order fixed by (seed, epoch).

    The order of an epoch depends only on the seed and the epoch number, never on the global RNG,
    so a resumed run sees the same batches as one that never stopped. Under DDP each global batch
    of `batch_size * num_replicas` is split between the ranks: 2 ranks x 64 see exactly the batches
    of 1 rank x 128, and no sample is repeated to pad a rank (evaluation counts each sample once).
    A DistributedSampler subclass, so that Lightning does not wrap it in its padding sampler.
    The order is drawn on the host, then moved once per epoch to `device` (the data's), where the
    batches are views of it: no index copy per batch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        device: torch.device | None = None,
    ) -> None:
        # no super().__init__(): it would query the process group; the rank is given here
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self.device = torch.device("cpu") if device is None else device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches: int) -> None:
        """Make the next iteration that epoch's order less its first `batches` (a mid-epoch resume)."""
        self.epoch, self._skip = epoch, batches

    def _remaining(self, batches: list[Any]) -> list[Any]:
        # a mid-epoch resume skips what the stopped run had trained on: once, in the epoch it stopped in
        skip, self._skip = getattr(self, "_skip", 0), 0
        return batches[skip:]

    def _batches(self) -> list[Tensor]:
        if self.shuffle:
            generator = torch.Generator().manual_seed((self.seed + 1_000_003 * self.epoch) % 2**63)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        # non-blocking: the copy of one epoch's order never waits for the device's queue
        batches = order.to(self.device, non_blocking=True).split(self.global_batch)
        if self.shuffle:
            # training ranks must take equal numbers of steps: drop a tail too short to reach every rank
            batches = [batch for batch in batches if len(batch) >= self.num_replicas]
        shares = [batch.tensor_split(self.num_replicas)[self.rank] for batch in batches]
        return [share for share in shares if len(share)]

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_replicas

    def __len__(self) -> int:
        # counted, not drawn: Lightning asks for lengths long before an epoch begins
        full, tail = divmod(self.size, self.global_batch)
        if tail == 0:
            return full
        if self.shuffle:
            return full + (tail >= self.num_replicas)
        return full + (tail // self.num_replicas + (self.rank < tail % self.num_replicas) > 0)

    def __iter__(self) -> Iterator[Tensor]:
        # a generator: the order is drawn at the first batch, after Lightning's set_epoch (a resumed
        # fit creates its first iterator before it restores the epoch and calls set_epoch)
        yield from self._remaining(self._batches())


class ResumableLoader(DataLoader):
    """A training loader whose place within an epoch a checkpoint keeps (Lightning's `_Stateful`).

    Lightning saves `state_dict()` in every checkpoint and, when a fit restarts inside an epoch,
    hands it back before the first batch: the sampler (a `BatchIndices`) then yields that epoch's
    order less the batches the stopped run had trained on, so the resumed run sees the same
    remaining batches in the same order. The count is the training steps Lightning saw through
    (not the batches drawn: its fetcher reads one ahead).
    """

    def __init__(self, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer = trainer

    def state_dict(self) -> dict[str, int]:
        trainer = self._trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(trainer.current_epoch), "batches": int(done)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if "batches" in state_dict and isinstance(self.sampler, BatchIndices):
            self.sampler.resume_at(int(state_dict["epoch"]), int(state_dict["batches"]))


class EvalShard(DistributedSampler):
    """This rank's samples of an evaluation set, strided and unpadded, so DDP counts each once."""

    def __init__(self, size: int, num_replicas: int, rank: int) -> None:
        self.size, self.num_replicas, self.rank, self.epoch = size, num_replicas, rank, 0

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))


def split_indices(n: int, val_size: int | float, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random train/val partition of `range(n)`; `val_size` is a count or a fraction."""
    n_val = round(val_size * n) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 <= n_val < n:
        raise ConfigError(
            f"data.val_size={val_size} leaves no training data out of {n} images; use a smaller value"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


# "standardized": per-channel zero mean, unit variance (classifiers);
# "symmetric": [0, 1] mapped to [-1, 1], the range of a tanh generator (GANs)
PIXEL_SCALINGS = ("standardized", "symmetric")


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 pixels to [0, 1] floats; float pixels are taken as already scaled."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std over a set of images, in chunks to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = to_unit_float(images[start : start + chunk]).double()
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.pow(2).sum(dim=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders of labelled images, with device-side augmentation.

    Subclasses implement `load_splits()` and set `input_shape` and `num_classes`. Splits held as
    `TensorBatches` move to the training device in `setup` (`device_resident=false` keeps them on
    the host; `num_workers > 0` does too, as workers cannot index device tensors).
    """

    input_shape: tuple[int, int, int]
    num_classes: int

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int | float = 5000,
        split_seed: int = 0,
        padding: int = 0,
        hflip: bool = False,
        augment: bool = True,
        num_workers: int = 0,
        download: bool = False,
        pixels: str = "standardized",
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        if pixels not in PIXEL_SCALINGS:
            raise ConfigError(
                f"data.pixels={pixels!r} is not a scaling; choose one of: {', '.join(PIXEL_SCALINGS)}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1")
        if padding < 0:
            raise ConfigError(f"data.padding={padding} must be 0 or more (pixels of random-crop padding)")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.padding = padding
        self.hflip = hflip
        self.augment = augment
        self.num_workers = num_workers
        self.download = download
        self.pixels = pixels
        self.device_resident = device_resident
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.mean = self.std = torch.empty(0)
        self._affine: tuple[Tensor, Tensor, bool] | None = None

    @property
    def net_kwargs(self) -> dict[str, Any]:
        """What a classifier needs to fit this data: `model` targets take these keywords."""
        return {"input_shape": tuple(self.input_shape), "num_classes": self.num_classes}

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset, Tensor, Tensor]:
        """Return train, val and test sets and the per-channel mean and std of the train set."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set, self.mean, self.std = self.load_splits()
            self._affine = None
        # on every call: a later fit or test may run on another device
        device = resident_device(trainer_device(self), self.num_workers, self.device_resident)
        self.train_set, self.val_set, self.test_set = (
            data.to(device) if isinstance(data, TensorBatches) else data
            for data in (self.train_set, self.val_set, self.test_set)
        )

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("setup() must run before the loaders are asked for")
        size = self.batch_size if train else self.eval_batch_size
        trainer = self.trainer
        ranks, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if isinstance(dataset, TensorBatches):
            # the run's seed (seed_everything sets it) fixes each epoch's order
            seed = torch.initial_seed()
            sampler = BatchIndices(len(dataset), size, train, seed, ranks, rank, dataset.device)
            # host tensors only: workers cannot index device tensors, nor can those be pinned
            host = dataset.device.type == "cpu"
            workers = self.num_workers if host else 0
            to_cuda = (trainer_device(self) or dataset.device).type == "cuda"
            # its own generator: creating an iterator then draws nothing from the global RNG, whose
            # state a resumed run restores (run/resume.py) and must find where it was left
            kind = ResumableLoader if train else DataLoader
            return kind(
                dataset,
                sampler=sampler,
                batch_size=None,
                generator=torch.Generator(),
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=host and to_cuda,
                **({"trainer": trainer} if train else {}),
            )
        return DataLoader(
            dataset,
            batch_size=size,
            # Lightning's distributed sampler pads evaluation sets by repeating samples
            sampler=None if train or ranks == 1 else EvalShard(len(dataset), ranks, rank),
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def transform_batch(self, images: Tensor, train: bool) -> Tensor:
        """Augment (training only) raw pixels, then scale and normalize them in one pass."""
        if train and self.augment:
            # zero padding is black in raw pixels as in [0, 1]; the flip is exact in any dtype
            images = random_hflip(random_crop(images, self.padding), 0.5 if self.hflip else 0.0)
        uint8 = images.dtype == torch.uint8
        if self._affine is None or self._affine[0].device != images.device or self._affine[2] != uint8:
            # (x / 255 - mean) / std as x * scale + shift: two ops on the batch instead of four
            mean, std = (self.mean, self.std) if self.pixels == "standardized" else self._half
            std = std.to(images.device).view(1, -1, 1, 1)
            mean = mean.to(images.device).view(1, -1, 1, 1)
            self._affine = (1 / (std * 255 if uint8 else std), -mean / std, uint8)
        scale, shift, _ = self._affine
        return torch.addcmul(shift, images.float(), scale)

    @property
    def _half(self) -> tuple[Tensor, Tensor]:
        """Mean and std of 0.5 per channel: (x - 0.5) / 0.5 maps [0, 1] onto [-1, 1]."""
        half = torch.full((self.input_shape[0],), 0.5)
        return half, half

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.transform_batch(images, train=training), labels


class TensorImageDataModule(ImageDataModule):
    """A data set small enough to hold as tensors; subclasses implement `load_arrays`.

    Held whole, it is held on the training device too (see `setup`): digits and the synthetic images
    are generated in memory, and torchvision's MNIST and CIFAR classes read their files whole into
    arrays anyway (CIFAR-10/100 are 180 MB as uint8, MNIST 55 MB), so one copy per device costs less
    than copying each batch there. Sets that read files per sample (image folders) stay on the host.
    """

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        """Images (N, C, H, W; uint8 or floats in [0, 1]) and int64 labels of the train or test set."""
        raise NotImplementedError

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset, Tensor, Tensor]:
        images, labels = self.load_arrays(train=True)
        test_images, test_labels = self.load_arrays(train=False)
        train_idx, val_idx = split_indices(len(labels), self.val_size, self.split_seed)
        mean, std = channel_stats(images[train_idx])
        return (
            TensorBatches(images[train_idx], labels[train_idx]),
            TensorBatches(images[val_idx], labels[val_idx]),
            TensorBatches(test_images, test_labels),
            mean,
            std,
        )

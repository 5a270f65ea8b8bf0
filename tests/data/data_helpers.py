"""Helpers for the data tests: tiny data sets in their published on-disk formats, and image shifts.

Plain functions, not fixtures: a `tests/data/conftest.py` would shadow the `conftest` module that
`from conftest import run_cli` finds (neither folder is a package).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor


@dataclass
class FakeSet:
    """What was written: images as N x C x H x W uint8, labels as int64."""

    root: Path
    folder: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def random_images(rng: np.random.Generator, n: int, shape: tuple[int, int, int], first_id: int) -> np.ndarray:
    """Noise images, each tagged with its id in pixel (0, 0, 0) so a loaded image says where it came from."""
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(first_id, first_id + n)
    return images


def image_id(images) -> list[int]:
    """The ids that `random_images` wrote, read back from a batch (uint8 tensor or array)."""
    return [int(v) for v in images[:, 0, 0, 0]]


def _pickle(path: Path, obj: dict) -> None:
    # The published batches are Python 2 pickles: their str keys load as str under torchvision's
    # `encoding="latin1"` (the b"data" on the CIFAR page is what `encoding="bytes"` shows).
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    # a row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    return images.reshape(len(images), 3 * 32 * 32)


def _write_idx(path: Path, array: np.ndarray) -> None:
    # big-endian magic 0x0000_08_ND (uint8 payload, ND dims), one 4-byte size per dim, then the bytes
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_cifar10(root: Path, train: np.ndarray | None = None) -> FakeSet:
    """CIFAR-10 with 5 training batches of 4 images (random, or the 20 given) and a test batch of 6."""
    rng = np.random.default_rng(10)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    if train is None:
        train = random_images(rng, 20, (3, 32, 32), first_id=0)
    train_labels = rng.integers(0, 10, 20)
    test = random_images(rng, 6, (3, 32, 32), first_id=100)
    test_labels = rng.integers(0, 10, 6)
    for b in range(5):
        part = slice(4 * b, 4 * b + 4)
        _pickle(
            folder / f"data_batch_{b + 1}",
            {
                "batch_label": f"training batch {b + 1} of 5",
                "labels": train_labels[part].tolist(),
                "data": _cifar_rows(train[part]),
                "filenames": [f"img_{i}.png" for i in range(4 * b, 4 * b + 4)],
            },
        )
    _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(), "data": _cifar_rows(test)},
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072})
    return FakeSet(root, folder, train, train_labels, test, test_labels)


def write_cifar100(root: Path) -> FakeSet:
    """CIFAR-100 with 20 training and 6 test images, fine labels spread over 0..99."""
    rng = np.random.default_rng(100)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train = random_images(rng, 20, (3, 32, 32), first_id=0)
    train_labels = np.array([0, 99, *rng.integers(0, 100, 18)])
    test = random_images(rng, 6, (3, 32, 32), first_id=100)
    test_labels = rng.integers(0, 100, 6)
    for name, images, labels in (("train", train, train_labels), ("test", test, test_labels)):
        _pickle(
            folder / name,
            {
                "data": _cifar_rows(images),
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
            },
        )
    meta = {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"c{i}" for i in range(20)],
    }
    _pickle(folder / "meta", meta)
    return FakeSet(root, folder, train, train_labels, test, test_labels)


def write_mnist(root: Path, class_name: str = "MNIST") -> FakeSet:
    """MNIST's (or, with `class_name="FashionMNIST"`, Fashion-MNIST's) four idx files: 20 train, 6 test."""
    rng = np.random.default_rng(28)
    folder = root / class_name / "raw"
    folder.mkdir(parents=True)
    train = random_images(rng, 20, (1, 28, 28), first_id=0)
    train_labels = np.array([*range(10), *rng.integers(0, 10, 10)])
    test = random_images(rng, 6, (1, 28, 28), first_id=100)
    test_labels = rng.integers(0, 10, 6)
    for prefix, images, labels in (("train", train, train_labels), ("t10k", test, test_labels)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return FakeSet(root, folder, train, train_labels, test, test_labels)


def make_trainer() -> pl.Trainer:
    """A real CPU Trainer whose stage flags (`training`, `validating`, `testing`) tests set by hand."""
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """`x` (..., H, W) moved so that out[y, x] = x[y + dy, x + dx], and zero where that falls outside."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)] = x[
        ..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)
    ]
    return out


def crop_offsets(
    out: Tensor, images: Tensor, padding: int, normalize=lambda x: x
) -> list[tuple[int, int] | None]:
    """Per image, the shift (dy, dx) with |dy|, |dx| <= padding that turns `images[i]` into `out[i]`, or None.

    `normalize` is applied to each shifted candidate, so zero-filling can be checked before normalization.
    """
    found: list[tuple[int, int] | None] = [None] * len(images)
    span = range(-padding, padding + 1)
    for dy in span:
        for dx in span:
            candidate = normalize(shifted(images, dy, dx)).float()
            close = torch.isclose(out.float(), candidate, rtol=0, atol=1e-5).flatten(1).all(1)
            for i in close.nonzero().flatten().tolist():
                found[i] = found[i] or (dy, dx)
    return found

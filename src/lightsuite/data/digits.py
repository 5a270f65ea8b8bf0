"""scikit-learn's 8x8 handwritten digits: 1,797 images that ship with the package (no download)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightsuite.data.image import TensorBatches, TensorImageDataModule, channel_stats, split_indices
from lightsuite.errors import ConfigError


class DigitsDataModule(TensorImageDataModule):
    """The offline default: a fixed random `test_size` images are the test set, the rest train and val.

    The test draw uses its own constant seed, so no `split_seed` or run seed ever moves an image
    between the test set and the others. For transfer learning, `classes` keeps only those digits
    in every split, labelled by their position in `classes` (`[5, 6, 7, 8, 9]`: digit 5 is label 0),
    so a K-digit subset trains a K-way classifier; `labels_per_class` keeps that many training
    images of each class, drawn with `split_seed` (validation and test sets stay whole).
    """

    TEST_SEED = 1797

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(
        self,
        test_size: int = 360,
        classes: Sequence[int] | None = None,
        labels_per_class: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.test_size = test_size
        if classes is not None:
            classes = [int(c) for c in classes]
            if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(range(10)):
                shown = ",".join(map(str, classes))
                raise ConfigError(
                    f"data.classes=[{shown}] must list distinct digits 0-9, e.g. data.classes=[0,1,2,3,4]"
                )
            self.num_classes = len(classes)
        if labels_per_class is not None and labels_per_class < 1:
            raise ConfigError(
                f"data.labels_per_class={labels_per_class} must be 1 or more (null: every training image)"
            )
        self.classes, self.labels_per_class = classes, labels_per_class

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        pixels, targets = digits_arrays()
        # pixel values are counts 0..16 of a 4x4 block; scale to [0, 1]
        images = torch.from_numpy(pixels).float().div_(16).unsqueeze(1)
        labels = torch.from_numpy(targets).long()
        rest, test = split_indices(len(labels), self.test_size, self.TEST_SEED)
        idx = rest if train else test
        images, labels = images[idx], labels[idx]
        if self.classes is None:
            return images, labels
        chosen = torch.tensor(self.classes)
        keep = torch.isin(labels, chosen)
        relabel = torch.full((10,), -1, dtype=torch.long)
        relabel[chosen] = torch.arange(len(chosen))
        return images[keep], relabel[labels[keep]]

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset, Tensor, Tensor]:
        train, val, test, mean, std = super().load_splits()
        if self.labels_per_class is None:
            return train, val, test, mean, std
        few = few_per_class(train.labels, self.labels_per_class, self.split_seed)
        # the statistics of the images trained on, as for a whole training split
        mean, std = channel_stats(train.images[few])
        return TensorBatches(train.images[few], train.labels[few]), val, test, mean, std


def few_per_class(labels: Tensor, count: int, seed: int) -> Tensor:
    """Sorted indices of `count` random samples of each label, drawn with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique().tolist():
        where = (labels == label).nonzero().flatten()
        if len(where) < count:
            raise ConfigError(
                f"data.labels_per_class={count}: label {label} has only {len(where)} training images; "
                f"use data.labels_per_class={len(where)} or fewer"
            )
        chosen.append(where[torch.randperm(len(where), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `load_digits()` returns them (images (1797, 8, 8), targets), read from
    the CSV file it ships without importing scikit-learn (about 0.9 s of a run's start-up)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    roots = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(roots or [""]))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():  # a scikit-learn that keeps it elsewhere: its own loader
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)

"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's dataset classes.

Files are read from `data_dir` in their published formats (idx files, pickled CIFAR batches) and
held in memory as uint8 tensors; `download=true` fetches them first.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torchvision import datasets

from lightsuite.data.image import TensorImageDataModule
from lightsuite.errors import DataNotFoundError


class TorchvisionDataModule(TensorImageDataModule):
    """A torchvision classification set; subclasses name the dataset class and its shape."""

    dataset_cls: ClassVar[type]
    # where the class keeps its files under `data_dir`, for the error message
    folder: ClassVar[str]

    def _dataset(self, train: bool, download: bool):
        return self.dataset_cls(root=str(self.data_dir), train=train, download=download)

    def prepare_data(self) -> None:
        if self.download:
            rank_zero_info(f"Downloading {self.dataset_cls.__name__} to {self.data_dir}")
            for train in (True, False):
                self._dataset(train, download=True)

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        try:
            ds = self._dataset(train, download=False)
        except RuntimeError as exc:
            if "not found" not in str(exc).lower():
                raise
            raise DataNotFoundError(
                f"{self.dataset_cls.__name__} files missing or corrupted in {self.data_dir / self.folder}: "
                "download them once with `data.download=true` (needs internet), "
                "or point `paths.data_dir` at a folder that has them"
            ) from None
        images = torch.as_tensor(np.asarray(ds.data))
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)


class MNISTDataModule(TorchvisionDataModule):
    dataset_cls = datasets.MNIST
    folder = "MNIST/raw"
    input_shape = (1, 28, 28)
    num_classes = 10


class FashionMNISTDataModule(TorchvisionDataModule):
    dataset_cls = datasets.FashionMNIST
    folder = "FashionMNIST/raw"
    input_shape = (1, 28, 28)
    num_classes = 10


class CIFAR10DataModule(TorchvisionDataModule):
    dataset_cls = datasets.CIFAR10
    folder = "cifar-10-batches-py"
    input_shape = (3, 32, 32)
    num_classes = 10


class CIFAR100DataModule(TorchvisionDataModule):
    dataset_cls = datasets.CIFAR100
    folder = "cifar-100-python"
    input_shape = (3, 32, 32)
    num_classes = 100

"""scikit-learn's 8x8 handwritten digits: 1,797 images that ship with the package (no download)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor

from lightsuite.data.image import TensorImageDataModule, split_indices


class DigitsDataModule(TensorImageDataModule):
    """The offline default: a fixed random `test_size` images are the test set, the rest train and val.

    The test draw uses its own constant seed, so no `split_seed` or run seed ever moves an image
    between the test set and the others.
    """

    TEST_SEED = 1797

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, test_size: int = 360, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_size = test_size

    def load_arrays(self, train: bool) -> tuple[Tensor, Tensor]:
        digits = load_digits()
        # pixel values are counts 0..16 of a 4x4 block; scale to [0, 1]
        images = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        rest, test = split_indices(len(labels), self.test_size, self.TEST_SEED)
        idx = rest if train else test
        return images[idx], labels[idx]

"""Your own images: a class-per-folder tree read by torchvision's `ImageFolder`.

Either `path/<class>/<image>` (split into train/val/test by seeded fractions) or
`path/train/<class>/...` with `path/test/...` (or `path/val/...`) kept as the test set.
Images are decoded in DataLoader workers, resized and center-cropped to `image_size`, and leave the
workers as uint8; augmentation and normalization run on the device like the other image sets.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from lightsuite.data.image import ImageDataModule, channel_stats, split_indices
from lightsuite.errors import DataNotFoundError


class ImageFolderDataModule(ImageDataModule):
    """Train a classifier on any folder of labelled images."""

    # The single-tree test draw has its own constant seed, like digits: no `split_seed` may move an image
    # into or out of the test set (1 is what the default split_seed=0 drew before, so defaults keep theirs).
    TEST_SEED = 1

    def __init__(
        self,
        path: str | None = None,
        image_size: int = 224,
        resize: int | None = None,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        stats_images: int = 1000,
        **kwargs,
    ) -> None:
        super().__init__(val_size=val_size, **kwargs)
        if not path:
            raise DataNotFoundError(
                "data.path is not set: pass data.path=<folder with one sub-folder per class>"
            )
        self.path = Path(path).expanduser().resolve()
        self.image_size = image_size
        # the usual ImageNet ratio: resize the short side to 256 for a 224 crop
        self.resize = resize or round(image_size * 256 / 224)
        self.test_size = test_size
        self.stats_images = stats_images
        if not self.path.is_dir():
            raise DataNotFoundError(
                f"image folder {self.path} not found: set data.path=<folder with one sub-folder per class>"
            )

    @cached_property
    def _roots(self) -> tuple[Path, Path | None]:
        """The folder to train on, and a separate test folder if the tree has one."""
        train = self.path / "train"
        if train.is_dir():
            test = next((self.path / name for name in ("test", "val") if (self.path / name).is_dir()), None)
            return train, test
        return self.path, None

    @cached_property
    def classes(self) -> list[str]:
        try:
            return datasets.folder.find_classes(str(self._roots[0]))[0]
        except FileNotFoundError:
            raise DataNotFoundError(
                f"no class folders in {self._roots[0]}: put each class's images in its own sub-folder"
            ) from None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _folder(self, root: Path) -> datasets.ImageFolder:
        tf = transforms.Compose(
            [transforms.Resize(self.resize), transforms.CenterCrop(self.image_size), transforms.PILToTensor()]
        )
        try:
            return datasets.ImageFolder(str(root), transform=tf)
        except FileNotFoundError as exc:
            raise DataNotFoundError(
                f"{root}: {exc}; supported image types are {datasets.folder.IMG_EXTENSIONS}"
            ) from None

    def load_splits(self) -> tuple[Dataset, Dataset, Dataset, Tensor, Tensor]:
        train_root, test_root = self._roots
        full = self._folder(train_root)
        if test_root is not None:
            test = self._folder(test_root)
            if test.classes != full.classes:
                raise DataNotFoundError(
                    f"{test_root} has classes {test.classes}, {train_root} has {full.classes}"
                )
            rest_idx = torch.arange(len(full))
        else:
            rest_idx, test_idx = split_indices(len(full), self.test_size, self.TEST_SEED)
            test = Subset(full, test_idx.tolist())
        train_pos, val_pos = split_indices(len(rest_idx), self.val_size, self.split_seed)
        train = Subset(full, rest_idx[train_pos].tolist())
        val = Subset(full, rest_idx[val_pos].tolist())
        return train, val, test, *self._stats(train)

    def _stats(self, train: Dataset) -> tuple[Tensor, Tensor]:
        """Channel statistics from (up to `stats_images` of) the training images."""
        picked = Subset(train, range(min(len(train), self.stats_images)))
        loader = DataLoader(picked, batch_size=256, num_workers=self.num_workers)
        images = torch.cat([x for x, _ in loader])
        return channel_stats(images)

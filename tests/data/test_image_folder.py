"""ImageFolder DataModule on small PNG/JPEG trees: classes from folders, resize and crop, both layouts."""

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from lightsuite.data.image_folder import ImageFolderDataModule
from lightsuite.errors import DataNotFoundError

# red channel says the class; blue says which image; the green channel stays 0
CLASSES = {"cat": 40, "dog": 120, "owl": 200}
BORDER = (255, 255, 255)


def write_tree(root: Path, per_class: int, first: int = 0, jpeg_class: str | None = None) -> None:
    """20x10 images: a class-and-number colour in the middle, white 3-pixel strips left and right."""
    for name, red in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(first, first + per_class):
            colour = (red, 0, 5 * i)
            if name == jpeg_class:
                # a flat image, so JPEG's loss stays small
                Image.new("RGB", (20, 10), colour).save(root / name / f"{i}.jpg", quality=95)
                continue
            image = Image.new("RGB", (20, 10), BORDER)
            image.paste(colour, (3, 0, 17, 10))
            image.save(root / name / f"{i}.png")


def build(make_cfg, path: Path, *overrides: str):
    cfg = make_cfg("train", ["data=image_folder", "data.image_size=8", "data.num_workers=0", *overrides])
    # set after composing: a tmp_path may hold characters that the override grammar reads as syntax
    cfg.data.path = str(path)
    return instantiate(cfg.data)


def contents(dataset) -> list[tuple[int, int]]:
    """(red, blue) of each image's centre pixel: which class and which image it is."""
    return [(int(x[0, 4, 4]), int(x[2, 4, 4])) for x, _ in dataset]


def test_classes_come_from_folders_and_shape_from_image_size(make_cfg, tmp_path):
    write_tree(tmp_path / "images", per_class=2)
    dm = build(make_cfg, tmp_path / "images", "data.image_size=12")
    assert dm.classes == sorted(CLASSES)
    assert dm.net_kwargs == {"input_shape": (3, 12, 12), "num_classes": 3}


def test_images_are_resized_and_centre_cropped_and_keep_their_labels(make_cfg, tmp_path):
    write_tree(tmp_path / "images", per_class=10, jpeg_class="owl")
    dm = build(make_cfg, tmp_path / "images", "data.batch_size=4")
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64

    reds = [CLASSES[name] for name in dm.classes]
    for split in (dm.train_set, dm.val_set, dm.test_set):
        for x, label in split:
            assert x.shape == (3, 8, 8)
            if dm.classes[label] == "owl":
                assert (x[0].int() - reds[label]).abs().max() <= 4
                continue
            # the white strips fall outside the centre crop, and the middle colour is uniform
            assert torch.equal(x, x[:, :1, :1].expand(3, 8, 8))
            assert int(x[0, 0, 0]) == reds[label] and int(x[1, 0, 0]) == 0


def test_single_tree_is_split_three_ways(make_cfg, tmp_path):
    write_tree(tmp_path / "images", per_class=10)
    dm = build(make_cfg, tmp_path / "images")
    dm.setup("fit")
    # 10% of 30 for test, then 10% of the remaining 27 for val
    train, val, test = (contents(s) for s in (dm.train_set, dm.val_set, dm.test_set))
    assert (len(train), len(val), len(test)) == (24, 3, 3)
    assert len(set(train + val + test)) == 30


def test_split_seed_moves_train_and_val_but_never_the_test_set(make_cfg, tmp_path):
    write_tree(tmp_path / "images", per_class=10)
    base, same, other = (build(make_cfg, tmp_path / "images", f"data.split_seed={s}") for s in (0, 0, 1))
    for dm in (base, same, other):
        dm.setup("fit")
    assert contents(same.val_set) == contents(base.val_set)
    assert contents(other.val_set) != contents(base.val_set)
    assert contents(other.test_set) == contents(same.test_set) == contents(base.test_set)


@pytest.mark.parametrize("test_folder", ["test", "val"])
def test_train_and_test_layout_keeps_the_test_folder_as_the_test_set(test_folder, make_cfg, tmp_path):
    root = tmp_path / "images"
    write_tree(root / "train", per_class=6)
    write_tree(root / test_folder, per_class=2, first=40)
    dm = build(make_cfg, root, "data.val_size=3")
    assert dm.num_classes == 3
    dm.setup("fit")

    train, val, test = (contents(s) for s in (dm.train_set, dm.val_set, dm.test_set))
    assert sorted(test) == sorted((red, 5 * i) for red in CLASSES.values() for i in (40, 41))
    assert sorted(train + val) == sorted((red, 5 * i) for red in CLASSES.values() for i in range(6))
    assert len(val) == 3


def test_stats_come_from_the_training_images(make_cfg, tmp_path):
    write_tree(tmp_path / "images", per_class=10)
    dm = build(make_cfg, tmp_path / "images")
    dm.setup("fit")
    train = torch.stack([x for x, _ in dm.train_set]).double() / 255
    torch.testing.assert_close(dm.mean, train.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(dm.std, train.std(dim=(0, 2, 3), unbiased=False).float())


def test_val_and_test_images_move_neither_the_statistics_nor_the_training_batches(make_cfg, tmp_path):
    def train_batches(dm) -> list:
        torch.manual_seed(0)
        return list(dm.train_dataloader())

    write_tree(tmp_path / "images", per_class=10)
    clean = build(make_cfg, tmp_path / "images", "data.batch_size=4")
    clean.setup("fit")
    before, clean_batches = contents(clean.val_set) + contents(clean.test_set), train_batches(clean)
    for split in (clean.val_set, clean.test_set):  # every validation and test image turned white
        for i in split.indices:
            Image.new("RGB", (20, 10), BORDER).save(split.dataset.samples[i][0])
    bright = build(make_cfg, tmp_path / "images", "data.batch_size=4")
    bright.setup("fit")
    assert contents(bright.val_set) + contents(bright.test_set) != before  # the premise: they changed

    assert torch.equal(bright.mean, clean.mean) and torch.equal(bright.std, clean.std)
    for (x, y), (x2, y2) in zip(clean_batches, train_batches(bright), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_missing_or_unset_path_is_data_not_found(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as err:
        ImageFolderDataModule(path=str(missing))
    assert str(missing) in str(err.value) and "data.path=" in str(err.value)
    with pytest.raises(DataNotFoundError, match=r"data\.path is not set"):
        ImageFolderDataModule(path=None)


def test_empty_folder_is_data_not_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dm = ImageFolderDataModule(path=str(empty), image_size=8)
    with pytest.raises(DataNotFoundError) as err:
        dm.num_classes  # noqa: B018 - the property is what train() reads first
    assert str(empty) in str(err.value) and "sub-folder" in str(err.value)
    with pytest.raises(DataNotFoundError, match=re.escape(str(empty))):
        dm.setup("fit")


def test_class_folders_without_images_name_the_supported_types(tmp_path):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    (tmp_path / "images" / "cat" / "notes.txt").write_text("no images here")
    dm = ImageFolderDataModule(path=str(tmp_path / "images"), image_size=8)
    with pytest.raises(DataNotFoundError, match=r"\.png"):
        dm.setup("fit")


def test_test_folder_with_other_classes_is_refused(tmp_path):
    write_tree(tmp_path / "images" / "train", per_class=2)
    (tmp_path / "images" / "test" / "zebra").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "test" / "zebra" / "0.png")
    dm = ImageFolderDataModule(path=str(tmp_path / "images"), image_size=8)
    with pytest.raises(DataNotFoundError, match="zebra"):
        dm.setup("fit")

"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 DataModules, built from their configs, on tiny fake files."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from data_helpers import image_id, random_images, write_cifar10, write_cifar100, write_mnist
from hydra.utils import instantiate

from lightsuite.errors import DataNotFoundError, exit_on_user_error
from lightsuite.train import train

# config name -> (writer, input_shape, num_classes, torchvision's folder under data_dir)
SETS = {
    "mnist": (write_mnist, (1, 28, 28), 10, "MNIST/raw"),
    "fashion_mnist": (lambda root: write_mnist(root, "FashionMNIST"), (1, 28, 28), 10, "FashionMNIST/raw"),
    "cifar10": (write_cifar10, (3, 32, 32), 10, "cifar-10-batches-py"),
    "cifar100": (write_cifar100, (3, 32, 32), 100, "cifar-100-python"),
}


@pytest.fixture(autouse=True)
def md5_free_cifar(monkeypatch):
    # The one patch: torchvision checks each CIFAR file against the md5 of the published archive, which a
    # fake file cannot match. Existence is still checked; unpickling, reshaping and meta loading run for real.
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


def build(make_cfg, name: str, *overrides: str):
    cfg = make_cfg("train", [f"data={name}", "data.val_size=4", "data.batch_size=8", *overrides])
    return instantiate(cfg.data)


def ready(make_cfg, name: str, *overrides: str):
    dm = build(make_cfg, name, *overrides)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name", sorted(SETS))
def test_written_images_and_labels_come_back_in_place(name, make_cfg, tmp_path):
    write, input_shape, num_classes, _ = SETS[name]
    fake = write(tmp_path / "data")
    dm = ready(make_cfg, name)

    assert dm.net_kwargs == {"input_shape": input_shape, "num_classes": num_classes}
    train, val, test = dm.train_set, dm.val_set, dm.test_set
    assert (len(train), len(val), len(test)) == (16, 4, 6)
    ids = image_id(train.images) + image_id(val.images)
    assert sorted(ids) == list(range(20))
    for split in (train, val):
        assert torch.equal(split.images, torch.from_numpy(fake.train_images[image_id(split.images)]))
        assert split.labels.tolist() == fake.train_labels[image_id(split.images)].tolist()
    # the test set is the test files, whole and in file order
    assert torch.equal(test.images, torch.from_numpy(fake.test_images))
    assert test.labels.tolist() == fake.test_labels.tolist()


@pytest.mark.parametrize("name", sorted(SETS))
def test_loader_gives_raw_uint8_and_transform_normalizes(name, make_cfg, tmp_path):
    write, input_shape, _, _ = SETS[name]
    write(tmp_path / "data")
    dm = ready(make_cfg, name)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, *input_shape) and images.dtype == torch.uint8
    assert labels.shape == (8,) and labels.dtype == torch.int64

    x = dm.transform_batch(images, train=False)
    assert x.dtype == torch.float32 and x.shape == images.shape
    mean, std = dm.mean.view(1, -1, 1, 1), dm.std.view(1, -1, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)


def test_cifar_rows_are_read_as_channel_row_column(make_cfg, tmp_path):
    # one image black but for a green pixel at row 5, column 9 (the transposed place, 9/5, stays black)
    train = random_images(np.random.default_rng(0), 20, (3, 32, 32), first_id=0)
    train[7] = 0
    train[7, 1, 5, 9] = 255
    train[7, 0, 0, 0] = 7
    write_cifar10(tmp_path / "data", train=train)
    dm = ready(make_cfg, "cifar10", "data.val_size=0")

    image = dm.train_set.images[image_id(dm.train_set.images).index(7)]
    assert image.shape == (3, 32, 32)
    # the flat row of the file: 1024 red values, 1024 green, 1024 blue, each plane row by row
    assert image.flatten().nonzero().flatten().tolist() == [0, 1024 + 5 * 32 + 9]
    assert image[1, 5, 9] == 255


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_split_follows_split_seed_and_never_touches_the_test_set(name, make_cfg, tmp_path):
    SETS[name][0](tmp_path / "data")
    first, again, other = (ready(make_cfg, name, f"data.split_seed={s}") for s in (0, 0, 1))

    assert image_id(first.val_set.images) == image_id(again.val_set.images)
    assert image_id(first.val_set.images) != image_id(other.val_set.images)
    for dm in (first, other):
        assert not set(image_id(dm.train_set.images)) & set(image_id(dm.val_set.images))
        assert torch.equal(dm.test_set.images, first.test_set.images)
        assert torch.equal(dm.test_set.labels, first.test_set.labels)


def test_val_size_may_be_a_fraction(make_cfg, tmp_path):
    write_mnist(tmp_path / "data")
    dm = ready(make_cfg, "mnist", "data.val_size=0.25")
    assert (len(dm.train_set), len(dm.val_set)) == (15, 5)


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar100"])
def test_normalization_stats_come_from_the_training_split_only(name, make_cfg, tmp_path):
    fake = SETS[name][0](tmp_path / "data")
    dm = ready(make_cfg, name)

    train = torch.from_numpy(fake.train_images[image_id(dm.train_set.images)]).double() / 255
    torch.testing.assert_close(dm.mean, train.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(dm.std, train.std(dim=(0, 2, 3), unbiased=False).float())
    # the val and test images would move them: the check above can tell
    everything = torch.from_numpy(np.concatenate([fake.train_images, fake.test_images])).double() / 255
    assert not torch.allclose(dm.mean, everything.mean(dim=(0, 2, 3)).float())


@pytest.mark.parametrize("name", sorted(SETS))
def test_missing_files_name_the_folder_and_the_download_switch(name, make_cfg, tmp_path):
    dm = build(make_cfg, name)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "data" / SETS[name][3]) in message
    assert "data.download=true" in message


@pytest.mark.parametrize(
    ("name", "missing"), [("cifar10", "batches.meta"), ("mnist", "t10k-labels-idx1-ubyte")]
)
def test_one_missing_file_is_data_not_found(name, missing, make_cfg, tmp_path):
    fake = SETS[name][0](tmp_path / "data")
    (fake.folder / missing).unlink()
    with pytest.raises(DataNotFoundError, match=r"data\.download=true"):
        ready(make_cfg, name)


def test_cifar100_labels_are_the_fine_labels(make_cfg, tmp_path):
    fake = write_cifar100(tmp_path / "data")
    with open(fake.folder / "train", "rb") as f:
        coarse = pickle.load(f)["coarse_labels"]
    dm = ready(make_cfg, "cifar100", "data.val_size=0")
    assert dm.train_set.labels.tolist() == fake.train_labels.tolist()
    assert dm.train_set.labels.tolist() != coarse
    assert {0, 99} <= set(dm.train_set.labels.tolist())


def test_missing_data_is_one_error_line_from_train(make_cfg, tmp_path, capsys):
    """What `lightsuite-train data=cifar10` prints without the files: one line, the folder, the fix."""
    cfg = make_cfg("train", ["data=cifar10", "callbacks.rich_progress_bar=null"])
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(cfg)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert str(tmp_path / "data" / "cifar-10-batches-py") in lines[0]
    assert "data.download=true" in lines[0]
    assert not list(tmp_path.rglob("metrics.json"))


def _whiten(path, rows) -> None:
    """Turn the given rows of a CIFAR batch file white, all but the id pixel (the first red value)."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["data"][rows, 1:] = 255
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_val_and_test_images_move_neither_the_statistics_nor_the_training_batches(make_cfg, tmp_path):
    fake = write_cifar10(tmp_path / "data")
    clean = ready(make_cfg, "cifar10")
    val_ids = image_id(clean.val_set.images)
    # the same files again, with every validation and test image white
    for b in range(5):
        _whiten(fake.folder / f"data_batch_{b + 1}", [i - 4 * b for i in val_ids if i // 4 == b])
    _whiten(fake.folder / "test_batch", slice(None))
    bright = ready(make_cfg, "cifar10")
    assert image_id(bright.val_set.images) == val_ids
    assert not torch.equal(bright.val_set.images, clean.val_set.images)  # the premise: they did change
    assert not torch.equal(bright.test_set.images, clean.test_set.images)

    assert torch.equal(bright.mean, clean.mean) and torch.equal(bright.std, clean.std)
    for augmented in (False, True):  # the same random draws on both sides
        batches = []
        for dm in (clean, bright):
            torch.manual_seed(0)
            batches.append([(dm.transform_batch(x, train=augmented), y) for x, y in dm.train_dataloader()])
        for (x, y), (x2, y2) in zip(*batches, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)

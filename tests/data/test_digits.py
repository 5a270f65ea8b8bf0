"""scikit-learn's digits: a fixed test draw, a seeded train/val split of the rest, pixels in [0, 1]."""

import importlib.util
from collections import Counter

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from sklearn.datasets import load_digits

from lightsuite.data.digits import digits_arrays
from lightsuite.errors import ConfigError, user_error


def ready(make_cfg, *overrides: str):
    dm = instantiate(make_cfg("train", ["data=digits", *overrides]).data)
    dm.setup("fit")
    return dm


def keyed(images: torch.Tensor, labels: torch.Tensor) -> Counter:
    return Counter((x.numpy().tobytes(), int(y)) for x, y in zip(images, labels, strict=True))


def test_default_split_sizes_and_shapes(make_cfg):
    dm = ready(make_cfg)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1257, 180, 360)
    assert dm.net_kwargs == {"input_shape": (1, 8, 8), "num_classes": 10}
    assert dm.train_set.images.shape == (1257, 1, 8, 8)
    for split in (dm.train_set, dm.val_set, dm.test_set):
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(10))
        assert split.images.min() >= 0 and split.images.max() <= 1


def test_splits_partition_the_1797_images(make_cfg):
    dm = ready(make_cfg)
    digits = load_digits()
    everything = keyed(
        torch.from_numpy(digits.images).float().div(16).unsqueeze(1), torch.from_numpy(digits.target)
    )
    parts = [keyed(s.images, s.labels) for s in (dm.train_set, dm.val_set, dm.test_set)]
    assert parts[0] + parts[1] + parts[2] == everything
    assert not (parts[0] & parts[2]) and not (parts[1] & parts[2]) and not (parts[0] & parts[1])


def test_split_seed_moves_train_and_val_but_never_the_test_set(make_cfg):
    torch.manual_seed(1)
    base = ready(make_cfg, "data.split_seed=0")
    torch.manual_seed(2)
    same = ready(make_cfg, "data.split_seed=0")
    other = ready(make_cfg, "data.split_seed=1")

    assert torch.equal(base.val_set.images, same.val_set.images)
    assert not torch.equal(base.val_set.images, other.val_set.images)
    for dm in (same, other):
        assert torch.equal(dm.test_set.images, base.test_set.images)
        assert torch.equal(dm.test_set.labels, base.test_set.labels)
    # what moves, moves between train and val only
    assert keyed(other.train_set.images, other.train_set.labels) + keyed(
        other.val_set.images, other.val_set.labels
    ) == keyed(base.train_set.images, base.train_set.labels) + keyed(base.val_set.images, base.val_set.labels)


def test_test_size_sets_the_test_draw(make_cfg):
    dm = ready(make_cfg, "data.test_size=100", "data.val_size=0.1")
    assert len(dm.test_set) == 100
    assert len(dm.val_set) == round(0.1 * 1697)
    assert len(dm.train_set) == 1697 - round(0.1 * 1697)


def _relabelled(images: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> Counter:
    """The (image, label) pairs of `classes` among all ten digits, each label its digit's position."""
    keep = [i for i, y in enumerate(labels.tolist()) if y in classes]
    return keyed(images[keep], torch.tensor([classes.index(int(labels[i])) for i in keep]))


def test_classes_keep_those_digits_labelled_by_their_position(make_cfg):
    whole = ready(make_cfg)
    dm = ready(make_cfg, "data.classes=[7,3]")
    assert dm.net_kwargs == {"input_shape": (1, 8, 8), "num_classes": 2}
    # the test draw is the whole data set's, filtered; train and val split what is left of 7 and 3
    assert keyed(dm.test_set.images, dm.test_set.labels) == _relabelled(
        whole.test_set.images, whole.test_set.labels, [7, 3]
    )
    rest = torch.cat([whole.train_set.images, whole.val_set.images])
    rest_labels = torch.cat([whole.train_set.labels, whole.val_set.labels])
    assert keyed(dm.train_set.images, dm.train_set.labels) + keyed(
        dm.val_set.images, dm.val_set.labels
    ) == _relabelled(rest, rest_labels, [7, 3])


def test_labels_per_class_keeps_that_many_training_images_of_each(make_cfg):
    every = ready(make_cfg, "data.classes=[5,6,7,8,9]")
    few = ready(make_cfg, "data.classes=[5,6,7,8,9]", "data.labels_per_class=10")
    assert Counter(few.train_set.labels.tolist()) == dict.fromkeys(range(5), 10)
    assert not keyed(few.train_set.images, few.train_set.labels) - keyed(
        every.train_set.images, every.train_set.labels
    )
    # validation and test stay whole; the pixel statistics are those of the 50 images trained on
    assert torch.equal(few.val_set.images, every.val_set.images)
    assert torch.equal(few.test_set.images, every.test_set.images)
    assert few.mean.item() == pytest.approx(few.train_set.images.mean().item(), rel=1e-5)
    assert few.std.item() == pytest.approx(few.train_set.images.std(unbiased=False).item(), rel=1e-4)


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        (["data.classes=[3,3]"], "data.classes=[3,3] must list distinct digits 0-9"),
        (["data.classes=[9,10]"], "data.classes=[9,10] must list distinct digits 0-9"),
        (["data.labels_per_class=0"], "data.labels_per_class=0 must be 1 or more"),
        (["data.labels_per_class=500"], "data.labels_per_class=500: label 0 has only"),
    ],
)
def test_bad_class_subsets_are_refused(make_cfg, overrides, refusal):
    with pytest.raises(Exception) as refused:  # Hydra wraps what a target raises
        ready(make_cfg, *overrides)
    assert isinstance(user_error(refused.value), ConfigError)
    assert str(user_error(refused.value)).startswith(refusal)


def test_the_shipped_file_reads_as_load_digits_and_without_it_load_digits_is_used(monkeypatch):
    digits = load_digits()
    images, targets = digits_arrays()
    assert np.array_equal(images, digits.images) and np.array_equal(targets, digits.target)
    assert images.dtype == digits.images.dtype and targets.dtype == digits.target.dtype
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no file to be found
    images, targets = digits_arrays()
    assert np.array_equal(images, digits.images) and np.array_equal(targets, digits.target)

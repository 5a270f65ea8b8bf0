"""scikit-learn's digits: a fixed test draw, a seeded train/val split of the rest, pixels in [0, 1]."""

from collections import Counter

import torch
from hydra.utils import instantiate
from sklearn.datasets import load_digits


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

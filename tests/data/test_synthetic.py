"""The synthetic image set: seeded, shaped as asked, and trainable end to end."""

from __future__ import annotations

import torch
from conftest import FAST
from hydra.utils import instantiate

from lightsuite.train import train


def test_shapes_labels_and_seed(make_cfg):
    cfg = make_cfg("train", ["data=synthetic", "data.input_shape=[3,16,16]", "data.num_images=200"])
    dm = instantiate(cfg.data)
    images, labels = dm.load_arrays(train=True)
    assert images.shape == (200, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.min() >= 0 and labels.max() < dm.num_classes
    assert dm.net_kwargs == {"input_shape": (3, 16, 16), "num_classes": 10}
    again, _ = instantiate(cfg.data).load_arrays(train=True)
    other, _ = instantiate(cfg.data, seed=1).load_arrays(train=True)
    assert torch.equal(images, again) and not torch.equal(images, other)
    test_images, _ = dm.load_arrays(train=False)
    assert len(test_images) == 20 and not torch.equal(test_images, images[:20])


def test_trains_any_shape(make_cfg):
    overrides = [*FAST, "data=synthetic", "data.input_shape=[2,12,12]", "data.num_images=256", "debug=fdr"]
    metrics = train(make_cfg("train", overrides))
    assert "test/acc" in metrics

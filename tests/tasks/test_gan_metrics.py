"""Offline GAN metrics on point sets and images whose answer is known."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from lightsuite.data.gaussians import mode_centers
from lightsuite.models.resnet import resnet20
from lightsuite.tasks.fid_classifier import FeatureClassifier
from lightsuite.tasks.gan_metrics import ClassConfidence, ModeCoverage

STD = 0.02


def _coverage(points):
    metric = ModeCoverage(mode_centers("ring"), STD)
    metric.update(points)
    return {k: v.item() for k, v in metric.compute().items()}


def _near(modes, n_each):
    gen = torch.Generator().manual_seed(0)
    return torch.cat([m + STD * torch.randn(n_each, 2, generator=gen).clamp(-2, 2) for m in modes])


def test_all_modes_one_mode_and_off_mode_noise():
    modes = mode_centers("ring")
    assert _coverage(_near(modes, 50)) == {"modes_covered": 8, "hq_ratio": 1.0}
    assert _coverage(_near(modes[:1], 400)) == {"modes_covered": 1, "hq_ratio": 1.0}
    # the ring's centre and far outside it are no mode's neighbourhood
    noise = torch.cat([torch.zeros(200, 2), torch.full((200, 2), 5.0)])
    assert _coverage(noise) == {"modes_covered": 0, "hq_ratio": 0.0}
    mixed = _coverage(torch.cat([_near(modes[:2], 200), noise]))
    assert mixed == {"modes_covered": 2, "hq_ratio": 0.5}


def test_a_mode_needs_one_percent_of_the_samples_within_three_std():
    modes = mode_centers("ring")
    many, few = _near(modes[:1], 995), _near(modes[1:2], 5)
    assert _coverage(torch.cat([many, few]))["modes_covered"] == 1  # 0.5% is not enough
    assert _coverage(torch.cat([many[:985], _near(modes[1:2], 15)]))["modes_covered"] == 2
    # 4 std away is not high quality
    assert _coverage(modes[:1] + torch.tensor([[4 * STD, 0.0]]))["hq_ratio"] == 0.0
    assert _coverage(modes[:1] + torch.tensor([[2.9 * STD, 0.0]]))["hq_ratio"] == 1.0


def test_grid_layout_has_25_modes():
    grid = mode_centers("grid")
    metric = ModeCoverage(grid, STD)
    metric.update(_near(grid, 10))
    assert metric.compute()["modes_covered"] == 25


def test_class_confidence_and_spread():
    metric = ClassConfidence(num_classes=4)
    confident = torch.eye(4).repeat(5, 1) * 20  # 20 samples, 5 per class, all sure
    metric.update(confident)
    out = metric.compute()
    assert out["class_confidence"] == 1.0
    assert out["class_share_min"] == out["class_share_max"] == 0.25
    metric.reset()
    metric.update(torch.zeros(10, 4))  # uniform: nobody is sure, argmax piles onto class 0
    out = metric.compute()
    assert out["class_confidence"] == 0.0 and out["class_share_max"] == 1.0 and out["class_share_min"] == 0.0


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    features = FeatureClassifier(resnet20(input_shape=(1, 8, 8), num_classes=10))
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    real = torch.rand(300, 1, 8, 8) * 2 - 1

    def fid(fake):
        metric = FrechetInceptionDistance(feature=features)
        metric.update(real, real=True)
        metric.update(fake, real=False)
        return metric.compute().item()

    assert fid(real) == pytest.approx(0.0, abs=1e-3)
    shifted = [fid(real + s) for s in (0.1, 0.3, 0.6)]
    assert 1e-3 < shifted[0] < shifted[1] < shifted[2]
    # the feature net stays frozen even when someone asks it to train
    features.train()
    assert not features.training

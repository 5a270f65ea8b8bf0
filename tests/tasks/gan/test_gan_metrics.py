"""Offline GAN metrics on point sets and images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from lightsuite.data.gaussians import mode_centers
from lightsuite.models.resnet import resnet20
from lightsuite.tasks.gan.evaluation import GANEvaluation
from lightsuite.tasks.gan.fid import FeatureClassifier
from lightsuite.tasks.gan.metrics import ClassConfidence, ModeCoverage

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


def test_coverage_counts_a_modes_share_among_all_samples_not_only_the_good_ones():
    """30 points on each of modes 0-2, 5 on mode 3, 905 at the ring's centre: 1% of 1000 is 10."""
    modes = mode_centers("ring")
    points = torch.cat([modes[:3].repeat_interleave(30, dim=0), modes[3:4].repeat(5, 1), torch.zeros(905, 2)])
    # mode 3's 5 points are high quality but too few for a mode; the centre is 2 away from every mode
    assert _coverage(points) == {"modes_covered": 3, "hq_ratio": pytest.approx(95 / 1000)}
    # far outside the ring, and midway between two neighbouring modes, are no mode's neighbourhood either
    midway = (modes[0] + modes[1]) / 2
    assert _coverage(torch.cat([points[:95], torch.full((450, 2), 9.0), midway.repeat(455, 1)])) == {
        "modes_covered": 3,
        "hq_ratio": pytest.approx(95 / 1000),
    }


class _Pixels(torch.nn.Module):
    """A 'classifier' whose penultimate features are its input: FID then compares the inputs' Gaussians."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _gaussian(mean, cov, n, seed):
    """n points whose sample mean and (n - 1)-normalised covariance are exactly `mean` and `cov`."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    white = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    x = np.asarray(mean) + white @ np.linalg.cholesky(cov).T
    return torch.tensor(x, dtype=torch.float32).reshape(n, len(mean), 1, 1)


def _frechet(m1, s1, m2, s2):
    """The closed form: ||m1 - m2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    covmean = scipy.linalg.sqrtm(np.asarray(s1) @ np.asarray(s2)).real
    return float(np.sum((np.asarray(m1) - np.asarray(m2)) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_fid_and_its_reference_are_the_closed_form_on_the_right_splits():
    """Train, val, test and generated sets with known moments: each FID pairs the splits it names."""
    rot = np.array([[np.cos(0.7), -np.sin(0.7), 0], [np.sin(0.7), np.cos(0.7), 0], [0, 0, 1]])
    sets = {  # distinct means and non-commuting covariances, so that any mix-up changes the value
        "train": ([0.0, 0.0, 0.0], np.diag([1.0, 2.0, 0.5])),
        "val": ([1.0, -0.5, 0.0], rot @ np.diag([3.0, 0.5, 1.0]) @ rot.T),
        "test": ([0.0, 2.0, 1.0], np.diag([0.5, 0.5, 2.0])),
        "fake": ([-1.0, 0.0, 0.5], rot.T @ np.diag([1.0, 4.0, 0.25]) @ rot),
    }
    data = {name: _gaussian(*moments, n=400, seed=i) for i, (name, moments) in enumerate(sets.items())}
    evaluation = GANEvaluation(num_reference=400)
    evaluation.feature_net = FeatureClassifier(_Pixels(3))
    evaluation.reference = evaluation._fid()
    labels = torch.zeros(200, dtype=torch.long)
    # as training_step feeds it, a batch at a time; past num_reference (400) batches are not taken
    for batch in [*data["train"].split(150), data["test"][:150]]:
        evaluation.see_training_batch(batch)
    for stage in ("val", "test"):
        for batch in data[stage].split(200):
            evaluation.see_real_batch(stage, batch, labels)
    val, test = evaluation.compute("val", data["fake"], 100), evaluation.compute("test", data["fake"], 100)
    assert val["fid"] == pytest.approx(_frechet(*sets["val"], *sets["fake"]), rel=1e-4)
    assert test["fid"] == pytest.approx(_frechet(*sets["test"], *sets["fake"]), rel=1e-4)
    # the floor: real training images against the real validation images
    assert val["fid_real"] == pytest.approx(_frechet(*sets["train"], *sets["val"]), rel=1e-4)
    # the next validation sees the same real batches again (once per run) and new samples
    for batch in data["val"].split(200):
        evaluation.see_real_batch("val", batch, labels)
    again = evaluation.compute("val", data["train"], 100)
    assert again["fid"] == pytest.approx(_frechet(*sets["val"], *sets["train"]), rel=1e-4)
    assert again["fid_real"] == val["fid_real"]

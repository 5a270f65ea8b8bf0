"""The 2-D Gaussian mixtures: where the modes are, that points sit on them, seeded and split apart."""

from __future__ import annotations

import math

import pytest
import torch

from lightsuite.data.gaussians import GaussiansDataModule, mode_centers
from lightsuite.errors import ConfigError


def test_ring_and_grid_modes():
    ring = mode_centers("ring")
    assert ring.shape == (8, 2)
    assert torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]).sort().values
    assert torch.allclose(angles.diff(), torch.full((7,), math.pi / 4), atol=1e-5)
    grid = mode_centers("grid")
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_points_lie_on_their_modes_and_are_seeded():
    dm = GaussiansDataModule(num_train=4000, num_val=100, num_test=100, batch_size=500, seed=3)
    assert dm.net_kwargs == {"input_shape": (2,), "num_classes": 8}  # known before any data is drawn
    dm.setup()
    points, labels = dm.sets["train"].images, dm.sets["train"].labels
    offsets = points - dm.modes[labels]
    assert offsets.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.bincount(labels).min() > 400  # every mode drawn
    again = GaussiansDataModule(num_train=4000, num_val=100, num_test=100, seed=3)
    again.setup()
    assert torch.equal(again.sets["train"].images, points)
    other = GaussiansDataModule(num_train=4000, num_val=100, num_test=100, seed=4)
    other.setup()
    assert not torch.equal(other.sets["train"].images, points)
    assert not torch.equal(dm.sets["val"].images, dm.sets["test"].images)
    batch, _ = next(iter(dm.train_dataloader()))
    assert batch.shape == (500, 2)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="ring, grid"):
        GaussiansDataModule(layout="spiral")
    with pytest.raises(ConfigError, match=r"data\.std"):
        GaussiansDataModule(std=0.0)
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        GaussiansDataModule(batch_size=0)

"""The adding problem: its definition, its seed, and the trivial baseline's error."""

from __future__ import annotations

import pytest
import torch

from lightsuite.data.adding import AddingDataModule
from lightsuite.errors import ConfigError


def test_two_marks_one_per_half_and_the_target_is_their_sum():
    dm = AddingDataModule(seq_len=20, num_train=500, num_val=10, num_test=4000, seed=3)
    dm.setup()
    x, y = dm.sets["test"]["x"], dm.sets["test"]["y"]
    marks = x[..., 1]
    assert marks.sum(1).eq(2).all()
    assert marks[:, :10].sum(1).eq(1).all() and marks[:, 10:].sum(1).eq(1).all()
    torch.testing.assert_close(y[:, 0], (x[..., 0] * marks).sum(1))
    # always predicting 1.0: the variance of a sum of two U(0, 1), 1/6
    assert (y - 1.0).pow(2).mean().item() == pytest.approx(1 / 6, abs=0.01)


def test_seeded_and_splits_differ():
    a, b, c = (AddingDataModule(seq_len=10, num_train=50, num_val=50, num_test=50, seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.sets["train"]["x"], b.sets["train"]["x"])
    assert not torch.equal(a.sets["train"]["x"], c.sets["train"]["x"])
    assert not torch.equal(a.sets["train"]["x"], a.sets["val"]["x"])


def test_bad_sizes():
    with pytest.raises(ConfigError, match=r"data.seq_len=1"):
        AddingDataModule(seq_len=1)
    with pytest.raises(ConfigError, match=r"data.num_train=0"):
        AddingDataModule(num_train=0)

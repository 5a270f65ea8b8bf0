"""Forecasting windows: exact indices on a known series, train-only scaling, inverted transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightsuite.data.series import SeriesDataModule, SunspotsDataModule
from lightsuite.errors import ConfigError


class KnownSeries(SeriesDataModule):
    """y_t = values given; no covariates; times 0..N-1."""

    def __init__(self, values: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values = np.asarray(values, dtype=float)

    def load_series(self):
        return self.values, np.zeros((len(self.values), 0)), np.arange(len(self.values))


def test_windows_of_a_known_series():
    # 20 points: 14 train, 2 val, 4 test; lookback 3, horizon 2
    dm = KnownSeries(np.arange(20.0), lookback=3, horizon=2, val_fraction=0.1, test_fraction=0.2)
    dm.setup()
    assert dm.origins("train").tolist() == list(range(3, 13))
    assert dm.origins("val").tolist() == [14]
    # every window whose targets lie in the held-back final segment 16..19 (rolling origin)
    assert dm.origins("test").tolist() == [16, 17, 18]
    test = dm.windows["test"]
    assert test["actual"].tolist() == [[16, 17], [17, 18], [18, 19]]
    unscaled = test["x"][..., 0] * dm.transform.std + dm.transform.mean
    torch.testing.assert_close(unscaled, torch.tensor([[13.0, 14, 15], [14, 15, 16], [15, 16, 17]]))
    # the scaler saw exactly the 14 training values
    assert dm.transform.mean == pytest.approx(6.5)
    assert dm.transform.std == pytest.approx(np.arange(14.0).std())


def test_no_later_value_leaks_into_the_scaler_or_the_training_windows():
    rng = np.random.default_rng(0)
    base = rng.normal(size=100)
    changed = base.copy()
    changed[70:] += 1000.0  # everything after the training segment
    a, b = (KnownSeries(v, lookback=8, horizon=3, log=False, difference=True) for v in (base, changed))
    a.setup()
    b.setup()
    assert (a.transform.mean, a.transform.std) == (b.transform.mean, b.transform.std)
    for key in ("x", "y"):
        torch.testing.assert_close(a.windows["train"][key], b.windows["train"][key])
    assert not torch.equal(a.windows["test"]["actual"], b.windows["test"]["actual"])


@pytest.mark.parametrize(("log", "difference"), [(False, False), (True, False), (False, True), (True, True)])
def test_transforms_are_inverted_exactly(log, difference):
    values = np.abs(np.sin(np.arange(80) / 3.0)) * 50 + np.arange(80)
    dm = KnownSeries(values, lookback=5, horizon=4, log=log, difference=difference)
    dm.setup()
    for stage in ("train", "val", "test"):
        w = dm.windows[stage]
        back = dm.transform.inverse(w["y"].double(), w["anchor"])
        torch.testing.assert_close(back, w["actual"], atol=1e-3, rtol=1e-5)


def test_net_kwargs_need_no_data_and_follow_recursive():
    dm = SunspotsDataModule(horizon=11)
    assert dm.net_kwargs == {"input_size": 1, "output_size": 11}
    assert dm.series is None  # nothing was read
    assert SunspotsDataModule(horizon=11, recursive=True).net_kwargs["output_size"] == 1


def test_sunspots_is_the_statsmodels_series():
    dm = SunspotsDataModule(lookback=24, horizon=11, period=11)
    dm.setup()
    assert len(dm.series) == 309 and dm.times[0] == 1700
    n_test = round(0.2 * 309)
    assert len(dm.origins("test")) == n_test - 11 + 1


def test_too_short_a_series_names_the_sizes():
    dm = KnownSeries(np.arange(30.0), lookback=24, horizon=1)
    with pytest.raises(ConfigError, match=r"30 rows .*lookback=24"):
        dm.setup()


def test_grouped_training_batches_keep_the_order_of_single_batches():
    dm = KnownSeries(np.arange(200.0), lookback=4, horizon=1, batch_size=8, batches_per_step=3)
    dm.setup()
    torch.manual_seed(5)
    groups = list(dm.train_dataloader())
    torch.manual_seed(5)
    dm.batches_per_step = 1
    singles = list(dm.train_dataloader())
    flat = [b for g in groups for b in g]
    assert all(len(s) == 1 for s in singles)  # training batches always come as a list
    assert len(groups) == -(-len(singles) // 3) and len(flat) == len(singles)
    for g, (s,) in zip(flat, singles, strict=True):
        assert torch.equal(g["origin"], s["origin"])


def test_each_epoch_shuffles_anew_from_the_seed_alone():
    dm = KnownSeries(np.arange(200.0), lookback=4, horizon=1, batch_size=8, batches_per_step=2)
    dm.setup()
    torch.manual_seed(3)
    loader = dm.train_dataloader()
    first, second = ([b["origin"] for g in loader for b in g] for _ in range(2))
    assert not torch.equal(torch.cat(first), torch.cat(second))
    torch.rand(100)  # other draws from the global generator (a validation loader's seed) change nothing
    torch.manual_seed(3)
    again = [b["origin"] for g in dm.train_dataloader() for b in g]
    assert torch.equal(torch.cat(again), torch.cat(first))

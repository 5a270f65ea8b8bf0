"""Forecasting windows: exact indices on a known series, train-only scaling, inverted transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightsuite.data.series import SeriesDataModule, SunspotsDataModule
from lightsuite.errors import ConfigError


class KnownSeries(SeriesDataModule):
    """y_t = values given, covariate columns as given (none by default); times 0..N-1."""

    def __init__(self, values: np.ndarray, covariates: np.ndarray | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values = np.asarray(values, dtype=float)
        self.covariates = np.zeros((len(values), 0)) if covariates is None else np.asarray(covariates, float)
        self.num_covariates = self.covariates.shape[1]

    def load_series(self):
        return self.values, self.covariates, np.arange(len(self.values))


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


def test_covariates_enter_lagged_like_the_target_and_over_the_horizon_for_feeding_back():
    # 20 points: 14 train; lookback 3, horizon 2; covariate 100 + 3t
    cov = 100.0 + 3 * np.arange(20.0)
    dm = KnownSeries(
        np.arange(20.0), cov[:, None], lookback=3, horizon=2, val_fraction=0.1, test_fraction=0.2
    )
    assert dm.net_kwargs == {"input_size": 2, "output_size": 2}
    dm.setup()
    train_part = cov[:14]
    assert dm.transform.cov_mean.tolist() == pytest.approx([train_part.mean()])
    assert dm.transform.cov_std.tolist() == pytest.approx([train_part.std()])
    test = dm.windows["test"]  # origins 16, 17, 18
    unscaled = test["x"][..., 1] * train_part.std() + train_part.mean()
    t = np.array([16, 17, 18])
    torch.testing.assert_close(unscaled.double(), torch.tensor(cov[t[:, None] + np.arange(-3, 0)]))
    ahead = test["future"][..., 0] * train_part.std() + train_part.mean()
    torch.testing.assert_close(ahead.double(), torch.tensor(cov[t[:, None] + np.arange(2)]))


@pytest.mark.parametrize("cut", [70, 75, 85], ids=["after_train", "in_val", "in_test"])
def test_no_later_target_or_covariate_reaches_an_earlier_window_or_the_scaler(cut):
    """Everything from `cut` on moved by 1000: a window at origin t reads only what precedes t."""
    rng = np.random.default_rng(0)
    base, cov = rng.normal(size=100), rng.normal(size=(100, 2))
    later = (np.arange(100) >= cut)[:, None]
    a, b = (
        KnownSeries(v, c, lookback=8, horizon=3, difference=True)
        for v, c in ((base, cov), (base + 1000.0 * later[:, 0], cov + 1000.0 * later))
    )
    a.setup()
    b.setup()
    assert (a.transform.mean, a.transform.std) == (b.transform.mean, b.transform.std)
    np.testing.assert_array_equal(a.transform.cov_mean, b.transform.cov_mean)
    np.testing.assert_array_equal(a.transform.cov_std, b.transform.cov_std)
    for stage in ("train", "val", "test"):
        wa, wb = a.windows[stage], b.windows[stage]
        t = wa["origin"]
        inputs_same = (wa["x"] == wb["x"]).flatten(1).all(1) & (wa["anchor"] == wb["anchor"])
        assert inputs_same.tolist() == (t <= cut).tolist(), stage
        # targets and the covariates ahead are known to lie in the future: equal only before the cut
        ahead_same = (wa["future"] == wb["future"]).flatten(1).all(1) & (wa["y"] == wb["y"]).all(1)
        assert ahead_same.tolist() == (t + 3 <= cut).tolist(), stage


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

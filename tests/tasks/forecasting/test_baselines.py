"""Classical baselines: hand-computed forecasts; ETS and ARIMA never see a value after the origin."""

from __future__ import annotations

import numpy as np
import pytest

from lightsuite.tasks.forecasting import baselines

SERIES = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])


def test_naive_seasonal_naive_and_drift_by_hand():
    origins = np.array([6, 8])
    assert baselines.naive(SERIES, origins, 3).tolist() == [[9, 9, 9], [6, 6, 6]]
    # period 2: targets t, t+1, t+2 take the value 2, 2, 4 steps back
    assert baselines.seasonal_naive(SERIES, origins, 3, period=2).tolist() == [[5, 9, 5], [2, 6, 2]]
    # from y_0 = 3 through y_{t-1}: slope (9 - 3) / 5 and (6 - 3) / 7
    np.testing.assert_allclose(
        baselines.drift(SERIES, origins, 2), [[9 + 1.2, 9 + 2.4], [6 + 3 / 7, 6 + 6 / 7]]
    )


def test_arima_grid_is_the_stated_one():
    grid = baselines.arima_grid((10, 1, 2))
    assert len(grid) == 66 and (0, 0, 0) in grid and (10, 1, 2) in grid and (11, 0, 0) not in grid


@pytest.mark.parametrize(
    "name", ["naive", "seasonal_naive", "drift", pytest.param("ets", marks=pytest.mark.slow), "arima"]
)
def test_each_baseline_uses_only_the_train_fit_and_the_history_before_each_origin(name):
    rng = np.random.default_rng(0)
    t = np.arange(150)
    series = 10 + 5 * np.sin(2 * np.pi * t / 11) + rng.normal(0, 0.5, 150)
    origins = np.arange(120, 126)
    n_train = 100
    test_changed = series.copy()
    test_changed[123:] -= 50  # from the middle of the origins on: only forecasts from later origins may move
    args = {"n_train": n_train, "origins": origins, "horizon": 3, "period": 11, "arima_max_order": (2, 0, 1)}
    base, fits = baselines.forecast_all([name], series, **args)
    moved, _ = baselines.forecast_all([name], test_changed, **args)
    np.testing.assert_allclose(base[name][origins <= 123], moved[name][origins <= 123])
    if name != "seasonal_naive":  # which reads 11 steps back: from these origins it never reaches the change
        assert not np.allclose(base[name][origins > 123], moved[name][origins > 123])
    assert np.isfinite(base[name]).all()
    # the fits' warnings are counted, not printed
    assert fits.fits == {"ets": 1, "arima": 6}.get(name, 0)
    assert "statsmodels fits" in fits.summary()


def test_arima_picks_the_lowest_aic_order_on_the_training_part():
    rng = np.random.default_rng(1)
    e = rng.normal(size=300)
    ar2 = np.zeros(300)
    for i in range(2, 300):
        ar2[i] = 0.6 * ar2[i - 1] - 0.5 * ar2[i - 2] + e[i]
    _, fits = baselines.forecast_all(["arima"], ar2, 250, np.arange(260, 270), 1, 1, (3, 0, 0))
    assert fits.arima_order == (2, 0, 0)


def test_statsmodels_warnings_are_counted_not_shown(recwarn):
    rng = np.random.default_rng(2)
    series = np.cumsum(rng.normal(size=80))
    _, fits = baselines.forecast_all(["arima"], series, 60, np.arange(65, 67), 2, 1, (2, 1, 1))
    assert fits.fits == 12
    assert not [w for w in recwarn if "statsmodels" in str(w.filename)]
    assert str(fits.warnings) in fits.summary()

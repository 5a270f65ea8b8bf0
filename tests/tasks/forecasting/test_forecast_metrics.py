"""Forecast metrics against values computed by hand, MASE included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightsuite.tasks.forecasting.task import forecast_metrics
from lightsuite.tasks.metrics import MeanAbsoluteScaledError


def test_mase_by_hand():
    train = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0])
    # period 2: |2-1| + |5-3| + |4-2| = 5 over 3 differences
    mase = MeanAbsoluteScaledError(period=2)
    mase.set_scale(train)
    assert mase.scale == pytest.approx(5 / 3)
    mase.update(torch.tensor([[6.0, 5.0]]), torch.tensor([[4.0, 6.0]]))
    mase.update(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 2.0]]))
    # errors 2, 1, 0, 1: MAE 1
    assert mase.compute().item() == pytest.approx(1 / (5 / 3))


def test_mase_period_one_is_naive_scale_and_checks_input():
    mase = MeanAbsoluteScaledError(period=1)
    mase.set_scale(torch.tensor([0.0, 2.0, 1.0]))  # |2| + |-1| = 3 over 2
    assert mase.scale == pytest.approx(1.5)
    with pytest.raises(ValueError, match="repeats"):
        MeanAbsoluteScaledError(period=1).set_scale(torch.ones(5))
    with pytest.raises(RuntimeError, match="set_scale"):
        MeanAbsoluteScaledError(period=1).compute()


def test_every_forecast_metric_by_hand():
    metrics = forecast_metrics(period=1)
    metrics["mase"].set_scale(torch.tensor([0.0, 4.0]))  # scale 4
    preds = torch.tensor([[2.0, 0.0], [3.0, 5.0]])
    target = torch.tensor([[1.0, 0.0], [5.0, 5.0]])
    values = {k: v.item() for k, v in metrics(preds, target).items()}
    # errors 1, 0, 2, 0
    assert values["mae"] == pytest.approx(0.75)
    assert values["rmse"] == pytest.approx((5 / 4) ** 0.5)
    # 2|e| / (|p| + |t|): 2/3, 0 (0/0 counts as 0), 4/8, 0
    assert values["smape"] == pytest.approx((2 / 3 + 0.5) / 4, rel=1e-5)
    assert values["mase"] == pytest.approx(0.75 / 4)


def test_mase_of_the_in_sample_seasonal_naive_forecast_is_one():
    """The scale is that forecast's own MAE over the training part: Hyndman & Koehler's definition."""
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.normal(size=50).cumsum())
    for period in (1, 4, 7):
        mase = MeanAbsoluteScaledError(period=period)
        mase.set_scale(train)
        mase.update(train[:-period], train[period:])  # y_{t-m} forecasting y_t, t = m..49
        assert mase.compute().item() == pytest.approx(1.0), period
        # and a forecast of half that error everywhere scores one half
        mase.reset()
        half = train[period:] + 0.5 * (train[:-period] - train[period:])
        mase.update(half, train[period:])
        assert mase.compute().item() == pytest.approx(0.5), period

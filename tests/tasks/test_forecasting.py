"""ForecastingTask through `train(cfg)` on the sunspots: metrics on the original scale, baselines, plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FAST

from lightsuite.data.series import SunspotsDataModule
from lightsuite.errors import ConfigError
from lightsuite.models.rnn import RecurrentNet
from lightsuite.tasks import baselines
from lightsuite.tasks.forecasting import ForecastingTask
from lightsuite.train import train

TINY = [
    *FAST,
    "experiment=sunspots_lstm",
    "model.hidden_size=8",
    "trainer.max_epochs=2",
    "task.arima_max_order=[1,0,0]",
    "logger=[csv,tensorboard]",
]


@pytest.mark.slow
def test_short_fit_writes_network_and_baseline_metrics_table_and_plot(make_cfg, tmp_path, capsys):
    metrics = train(make_cfg("train", [*TINY, "data.horizon=3"]))
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        for name in ("mae", "rmse", "smape", "mase"):
            assert np.isfinite(saved[f"{stage}/{name}"])
    for name in baselines.NAMES:
        assert f"baseline/{name}/test/mase" in saved
    assert (run / "forecast.png").stat().st_size > 10_000
    assert list((run / "tensorboard").rglob("events.out.tfevents*")), "no TensorBoard events"
    out = capsys.readouterr().out
    assert out.count("statsmodels fits") == 1 and "seasonal_naive" in out and "network" in out
    # the same windows for every model: recompute the seasonal naive's MASE from the data alone
    dm = SunspotsDataModule(lookback=24, horizon=3)
    dm.setup()
    origins = dm.origins("test")
    actual = dm.series[origins[:, None] + np.arange(3)]
    forecast = baselines.seasonal_naive(dm.series, origins, 3, 11)
    train_part = dm.train_series()
    scale = np.abs(train_part[11:] - train_part[:-11]).mean()
    assert metrics["baseline/seasonal_naive/test/mase"] == pytest.approx(
        np.abs(forecast - actual).mean() / scale, rel=1e-5
    )


def test_metrics_are_on_the_original_scale(make_cfg, tmp_path):
    """With log and differencing on, the network's test MAE is still in sunspot numbers."""
    overrides = [*TINY, "data.log=true", "data.difference=true", "task.baselines=[naive]", "task.plot=false"]
    metrics = train(make_cfg("train", overrides))
    # an untrained model's error is of the order of the series' own changes, not of scaled units
    naive = metrics["baseline/naive/test/mae"]
    assert 0.2 * naive < metrics["test/mae"] < 5 * naive
    assert metrics["test/mase"] == pytest.approx(
        metrics["test/mae"] / metrics["baseline/naive/test/mae"] * metrics["baseline/naive/test/mase"],
        rel=1e-4,
    )


def test_recursive_forecast_feeds_its_outputs_back():
    net = RecurrentNet("gru", output_size=1, input_size=2, hidden_size=4)
    task = ForecastingTask(net, optimizer=torch.optim.Adam, recursive=True, baselines=[])
    x, future = torch.randn(3, 5, 2), torch.randn(3, 4, 1)
    out = task(x, future, horizon=4)
    assert out.shape == (3, 4)
    # step 2 is the network applied to the window shifted by one, ending in step 1's output
    step1 = net(x)[0]
    shifted = torch.cat([x[:, 1:], torch.cat([step1, future[:, 0]], 1).unsqueeze(1)], 1)
    torch.testing.assert_close(out[:, 1:2], net(shifted)[0])


def test_recursive_run_trains_a_one_step_network(make_cfg):
    metrics = train(make_cfg("train", [*TINY, "task.recursive=true", "data.horizon=4", "task.baselines=[]"]))
    assert np.isfinite(metrics["test/mase"])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"loss": "huber"}, "task.loss"),
        ({"baselines": ["prophet"]}, "task.baselines"),
        ({"arima_max_order": (1, 0)}, "task.arima_max_order"),
        ({"gradient_clip_val": 0.0}, "gradient_clip_val"),
    ],
)
def test_bad_task_settings(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        ForecastingTask(RecurrentNet("lstm", 1), optimizer=torch.optim.Adam, **kwargs)

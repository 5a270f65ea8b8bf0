"""ForecastingTask: it learns, its metrics are their definitions on the original scale, nothing leaks.

Expected values are worked out here with numpy from the raw series (split, scaling, windows and
the inverse transform by hand), never read back from the DataModule or the task under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST

from lightsuite.data.csv_series import CSVSeriesDataModule
from lightsuite.data.series import SunspotsDataModule
from lightsuite.errors import ConfigError
from lightsuite.models.rnn import RecurrentNet
from lightsuite.tasks.forecasting import baselines
from lightsuite.tasks.forecasting.task import ForecastingTask
from lightsuite.train import train

TINY = [
    *FAST,
    "experiment=sunspots_lstm",
    "model.hidden_size=8",
    "trainer.max_epochs=2",
    "task.arima_max_order=[1,0,0]",
    "logger=[csv,tensorboard]",
]


def write_csv(path: Path, y: np.ndarray, c: np.ndarray | None = None) -> Path:
    """Columns t, y (and c): the series as `data=csv` reads it."""
    header = "t,y" + (",c" if c is not None else "")
    rows = [f"{i},{float(v)!r}" + (f",{float(c[i])!r}" if c is not None else "") for i, v in enumerate(y)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def periodic(n: int = 240, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """Two harmonics of a 12-step cycle with a little noise: naive is poor, the pattern is learnable."""
    t = np.arange(n)
    wave = 10 + 5 * np.sin(2 * np.pi * t / 12) + 2 * np.sin(2 * np.pi * t / 6 + 1)
    return wave + np.random.default_rng(seed).normal(0, noise, n)


@pytest.mark.parametrize("recursive", [False, True], ids=["direct", "recursive"])
def test_network_beats_naive_by_a_clear_factor_on_a_periodic_series(make_cfg, tmp_path, recursive):
    """MAE at horizon 6 under a third of naive's (seeds 0-4: 5.8-8.1x lower direct, 12.7-15x recursive)."""
    y = periodic()
    csv = write_csv(tmp_path / "wave.csv", y)
    overrides = [
        *FAST,
        "experiment=sunspots_lstm",
        "data=csv",
        f"data.path={csv}",
        "data.time_column=t",
        "data.target_column=y",
        "data.period=12",
        "data.horizon=6",
        "data.batch_size=16",
        "data.batches_per_step=16",
        "model.hidden_size=16",
        "trainer.max_epochs=12",
        "task.baselines=[naive]",
        "task.plot=false",
        f"task.recursive={recursive}",
        "seed=0",
    ]
    metrics = train(make_cfg("train", overrides))
    # naive by hand: 240 rows, the last 48 test; every window whose 6 targets lie in them
    origins = np.arange(192, 240 - 6 + 1)
    naive_mae = np.abs(y[origins[:, None] + np.arange(6)] - y[origins - 1, None]).mean()
    assert metrics["baseline/naive/test/mae"] == pytest.approx(naive_mae, rel=1e-6)
    assert metrics["test/mae"] < naive_mae / 3, (metrics["test/mae"], naive_mae)


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


# 100 rows: 70 train, 10 validate, the last 20 test; lookback 8, horizon 3, period 4
N, N_TRAIN, N_VAL, L, H, M = 100, 70, 10, 8, 3, 4


def covariate_series(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    y = 30 + 8 * np.sin(2 * np.pi * t / M) + 0.2 * t + rng.normal(0, 1, N)
    return y, rng.normal(5, 2, N)


def csv_module(path: Path, **kwargs) -> CSVSeriesDataModule:
    args = {"time_column": "t", "target_column": "y", "covariates": ["c"], "period": M, "lookback": L}
    return CSVSeriesDataModule(path=str(path), horizon=H, eval_batch_size=7, **{**args, **kwargs})


def by_hand(net: RecurrentNet, y: np.ndarray, c: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The network's forecasts on the original scale: log1p, differences, train-only standardization."""
    z = np.log1p(y)
    d = np.diff(z[:N_TRAIN])
    scaled = np.concatenate([[np.nan], (np.diff(z) - d.mean()) / d.std()])
    cs = (c - c[:N_TRAIN].mean()) / c[:N_TRAIN].std()
    x = np.stack([np.stack([scaled[t - L : t], cs[t - L : t]], axis=-1) for t in origins])
    with torch.no_grad():
        s = net(torch.tensor(x, dtype=torch.float32))[0].double().numpy()
    return np.expm1(z[origins - 1, None] + np.cumsum(s * d.std() + d.mean(), axis=1))


def test_metrics_are_their_definitions_on_the_original_scale(tmp_path):
    """log1p and differencing inverted, MASE over the training part's period-4 changes, baselines' windows."""
    y, c = covariate_series()
    dm = csv_module(write_csv(tmp_path / "s.csv", y, c), log=True, difference=True)
    torch.manual_seed(0)
    net = RecurrentNet("gru", output_size=H, input_size=2, hidden_size=8)
    task = ForecastingTask(
        net, optimizer=torch.optim.Adam, baselines=["naive", "arima"], arima_max_order=(1, 0, 0), plot=False
    )
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    got = {**trainer.validate(task, datamodule=dm, verbose=False)[0]}
    got.update(trainer.test(task, datamodule=dm, verbose=False)[0])
    scale = np.abs(y[M:N_TRAIN] - y[: N_TRAIN - M]).mean()  # in-sample seasonal naive, training part only
    stages = {
        "val": np.arange(N_TRAIN, N_TRAIN + N_VAL - H + 1),
        "test": np.arange(N_TRAIN + N_VAL, N - H + 1),
    }
    for stage, origins in stages.items():
        pred, actual = by_hand(net, y, c, origins), y[origins[:, None] + np.arange(H)]
        err = pred - actual
        expected = {
            "mae": np.abs(err).mean(),
            "rmse": np.sqrt((err**2).mean()),
            "smape": (2 * np.abs(err) / (np.abs(pred) + np.abs(actual))).mean(),
            "mase": np.abs(err).mean() / scale,
        }
        for name, value in expected.items():
            assert got[f"{stage}/{name}"] == pytest.approx(value, rel=1e-5), (stage, name)
    origins = stages["test"]
    actual = y[origins[:, None] + np.arange(H)]
    assert got["baseline/naive/test/mae"] == pytest.approx(np.abs(actual - y[origins - 1, None]).mean())
    # ARIMA fitted on the 70 training values only, whatever the task has seen
    arima = baselines.forecast_all(["arima"], y, N_TRAIN, origins, H, M, (1, 0, 0))[0]["arima"]
    assert got["baseline/arima/test/mae"] == pytest.approx(np.abs(arima - actual).mean(), rel=1e-6)


@pytest.mark.parametrize("recursive", [False, True], ids=["direct", "recursive"])
def test_forecasts_before_a_cut_ignore_every_later_target_and_covariate(tmp_path, recursive):
    """A forecast from origin t reads targets before t and (recursive) covariates known up to t + H - 2."""
    y, c = covariate_series()
    cut = 75  # inside the validation part: train, val and test windows on either side of it
    later = np.arange(N) >= cut
    forecasts = []
    for name, shift in (("base", 0.0), ("moved", 1000.0)):
        path = write_csv(tmp_path / f"{name}.csv", y + shift * later, c - shift * later)
        dm = csv_module(path, difference=True, recursive=recursive)
        dm.setup()
        torch.manual_seed(0)
        net = RecurrentNet("lstm", output_size=1 if recursive else H, input_size=2, hidden_size=8)
        task = ForecastingTask(net, optimizer=torch.optim.Adam, recursive=recursive, baselines=[])
        rows = {}
        for stage in ("train", "val", "test"):
            w = dm.windows[stage]
            with torch.no_grad():
                scaled = task(w["x"], w["future"], H)
            for t, f in zip(w["origin"].tolist(), dm.transform.inverse(scaled, w["anchor"]), strict=True):
                rows[t] = f
        forecasts.append(rows)
    base, moved = forecasts
    last_unaffected = cut - H + 1 if recursive else cut
    same = {t for t in base if torch.equal(base[t], moved[t])}
    assert same == {t for t in base if t <= last_unaffected}
    assert {t for t in base if t > last_unaffected}, "the cut must leave windows after it"


def test_recursive_forecast_feeds_its_outputs_and_each_steps_covariates_back():
    torch.manual_seed(0)
    net = RecurrentNet("gru", output_size=1, input_size=2, hidden_size=4)
    task = ForecastingTask(net, optimizer=torch.optim.Adam, recursive=True, baselines=[])
    x, future = torch.randn(3, 5, 2), torch.randn(3, 4, 1)
    out = task(x, future, horizon=4)
    assert out.shape == (3, 4)
    # by hand: step k reads the window shifted k times, its newest rows (output j, covariate j)
    window, expected = x, []
    for k in range(4):
        step = net(window)[0]
        expected.append(step)
        window = torch.cat([window[:, 1:], torch.cat([step, future[:, k]], 1).unsqueeze(1)], 1)
    torch.testing.assert_close(out, torch.cat(expected, 1))


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

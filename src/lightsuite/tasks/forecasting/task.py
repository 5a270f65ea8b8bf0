"""Forecasting: the next H values of a series from the last L, beside classical baselines on the same windows.

The network is trained on the DataModule's scaled values; every metric is computed on the original
scale (the DataModule's transform inverted), under `val/` and `test/`: MAE, RMSE and sMAPE from
torchmetrics and MASE (`MeanAbsoluteScaledError`). At test time the baselines of
`baselines.py` forecast exactly the windows the network was tested on; their metrics are
logged as `baseline/<name>/test/<metric>`, shown in one table, and the best of them is drawn beside
the network in `forecast.png` in the run dir.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection
from torchmetrics.regression import SymmetricMeanAbsolutePercentageError

from lightsuite.errors import ConfigError
from lightsuite.io import replacing
from lightsuite.tasks.forecasting import baselines as classical
from lightsuite.tasks.metrics import MeanAbsoluteScaledError
from lightsuite.tasks.sequence import SequenceTask

LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss}
METRICS = ("mae", "rmse", "smape", "mase")


def forecast_metrics(period: int) -> MetricCollection:
    return MetricCollection(
        {
            "mae": MeanAbsoluteError(),
            "rmse": MeanSquaredError(squared=False),
            "smape": SymmetricMeanAbsolutePercentageError(),
            "mase": MeanAbsoluteScaledError(period),
        }
    )


class ForecastingTask(SequenceTask):
    """Trains `net` to forecast `data.horizon` values: directly (H outputs) or recursively (one, fed back).

    Recursive: the network predicts one step, trained on the first target of each window; a forecast
    feeds each prediction (with that step's covariates) back as the newest input, H times.
    """

    report_metrics: tuple[str, ...] = ("val/mase", "train/loss")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        gradient_clip_val: float | None = None,
        loss: str = "mse",
        recursive: bool = False,
        baselines: list[str] | None = None,
        arima_max_order: tuple[int, int, int] = (10, 1, 2),
        plot: bool = True,
    ) -> None:
        super().__init__(net, optimizer, scheduler, gradient_clip_val)
        if loss not in LOSSES:
            raise ConfigError(f"task.loss={loss!r} must be one of: {', '.join(LOSSES)}")
        baselines = list(classical.NAMES if baselines is None else baselines)
        unknown = sorted(set(baselines) - set(classical.NAMES))
        if unknown:
            raise ConfigError(
                f"task.baselines has unknown {unknown}; choose from {', '.join(classical.NAMES)}"
            )
        # plain values: hyperparameters travel in checkpoints read with weights_only=True
        arima_max_order = tuple(int(v) for v in arima_max_order)
        if len(arima_max_order) != 3 or min(arima_max_order) < 0:
            raise ConfigError(
                f"task.arima_max_order={list(arima_max_order)} must be three numbers >= 0: max p, d, q"
            )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.loss_fn = LOSSES[loss]
        self.recursive = recursive
        self.baselines = baselines
        self.arima_max_order = tuple(arima_max_order)
        self.plot = plot
        self.val_metrics = forecast_metrics(1)
        self.test_metrics = forecast_metrics(1)
        self._test_outputs: list[dict[str, Tensor]] = []

    def setup(self, stage: str) -> None:
        """MASE's scale comes from the training segment, known once the data are set up."""
        datamodule = self.trainer.datamodule
        for metrics in (self.val_metrics, self.test_metrics):
            metrics["mase"].period = datamodule.period
            try:
                metrics["mase"].set_scale(torch.from_numpy(datamodule.train_series()))
            except ValueError as exc:
                raise ConfigError(f"data.period={datamodule.period}: {exc}; check data.period") from exc

    def forward(self, x: Tensor, future: Tensor, horizon: int) -> Tensor:
        """Scaled forecasts (batch, horizon)."""
        if not self.recursive:
            return self.net(x)[0]
        steps = []
        for k in range(horizon):
            step = self.net(x)[0][:, :1]
            steps.append(step)
            newest = torch.cat([step, future[:, k]], dim=1).unsqueeze(1)
            x = torch.cat([x[:, 1:], newest], dim=1)
        return torch.cat(steps, dim=1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        y = batch["y"][:, :1] if self.recursive else batch["y"]
        return self.loss_fn(self.net(batch["x"])[0], y)

    def _original_scale(self, batch: dict[str, Tensor]) -> Tensor:
        scaled = self(batch["x"], batch["future"], batch["y"].shape[1])
        return self.trainer.datamodule.transform.inverse(scaled, batch["anchor"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self._original_scale(batch), batch["actual"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()}, prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        preds = self._original_scale(batch)
        self.test_metrics.update(preds, batch["actual"])
        self._test_outputs.append({"pred": preds.cpu(), "origin": batch["origin"].cpu()})

    def on_test_epoch_end(self) -> None:
        results = {"network": {k: v.item() for k, v in self.test_metrics.compute().items()}}
        self.test_metrics.reset()
        self.log_dict({f"test/{k}": v for k, v in results["network"].items()})
        pred = torch.cat([o["pred"] for o in self._test_outputs]).numpy()
        origins = torch.cat([o["origin"] for o in self._test_outputs]).numpy()
        self._test_outputs.clear()
        forecasts, fits = self._baseline_forecasts(origins, pred.shape[1])
        datamodule = self.trainer.datamodule
        actual = datamodule.series[origins[:, None] + np.arange(pred.shape[1])]
        for name, forecast in forecasts.items():
            results[name] = self._score(forecast, actual)
            self.log_dict({f"baseline/{name}/test/{k}": v for k, v in results[name].items()})
        if self.trainer.is_global_zero:
            self._report(results, fits, len(origins), pred.shape[1])
            if self.plot:
                self._draw(origins, pred, actual, forecasts, results)

    def _baseline_forecasts(self, origins: np.ndarray, horizon: int) -> tuple[dict[str, np.ndarray], Any]:
        datamodule = self.trainer.datamodule
        return classical.forecast_all(
            self.baselines,
            datamodule.series,
            len(datamodule.train_series()),
            origins,
            horizon,
            datamodule.period,
            self.arima_max_order,
        )

    def _score(self, forecast: np.ndarray, actual: np.ndarray) -> dict[str, float]:
        metrics = forecast_metrics(self.trainer.datamodule.period)
        metrics["mase"].set_scale(torch.from_numpy(self.trainer.datamodule.train_series()))
        metrics.update(torch.from_numpy(forecast), torch.from_numpy(actual))
        return {k: v.item() for k, v in metrics.compute().items()}

    @rank_zero_only
    def _report(
        self, results: dict[str, dict[str, float]], fits: classical.Fits, windows: int, horizon: int
    ) -> None:
        """One table: the network and each baseline on the same test windows."""
        console = Console()
        if fits.fits:
            console.print(fits.summary())
        lookback = self.trainer.datamodule.lookback
        table = Table(
            title=f"{windows} test windows, lookback {lookback}, horizon {horizon} (original scale)"
        )
        table.add_column("model")
        for name in METRICS:
            table.add_column(name, justify="right")
        best = min(results, key=lambda n: results[n]["mase"] if np.isfinite(results[n]["mase"]) else np.inf)
        for name, values in results.items():
            style = "bold green" if name == best else None
            table.add_row(name, *(f"{values[m]:.4g}" for m in METRICS), style=style)
        console.print(table)

    def _draw(
        self,
        origins: np.ndarray,
        pred: np.ndarray,
        actual: np.ndarray,
        forecasts: dict[str, np.ndarray],
        results: dict[str, dict[str, float]],
    ) -> Path:
        """Actuals, the network and the best baseline at lead 1 (and lead H), as `forecast.png`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        datamodule = self.trainer.datamodule
        times = datamodule.times
        horizon = pred.shape[1]
        fig, ax = plt.subplots(figsize=(10, 4))
        context = max(0, origins.min() - 3 * datamodule.lookback)
        span = np.arange(context, origins.max() + horizon)
        ax.plot(times[span], datamodule.series[span], color="black", lw=1.2, label="actual")
        leads = sorted({0, horizon - 1})
        named = [("network", pred)]
        scored = [n for n in forecasts if np.isfinite(results[n]["mase"])]
        if scored:
            best = min(scored, key=lambda n: results[n]["mase"])
            named.append((best, forecasts[best]))
        for (name, values), color in zip(named, ("tab:blue", "tab:orange"), strict=False):
            for lead in leads:
                style = "-" if lead == 0 else "--"
                label = f"{name} (MASE {results[name]['mase']:.3f}), lead {lead + 1}"
                ax.plot(times[origins + lead], values[:, lead], style, color=color, lw=1, label=label)
        ax.axvline(times[origins.min()], color="grey", lw=0.8, ls=":")
        ax.set_title("forecasts on the test windows")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(self.trainer.default_root_dir) / "forecast.png"
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("test/forecast", fig, self.global_step)
            elif hasattr(logger, "log_image"):
                logger.log_image(key="test/forecast", images=[str(path)])
        plt.close(fig)
        return path

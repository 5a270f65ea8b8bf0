"""Univariate time series cut into forecasting windows: a chronological split, train-only scaling.

The series (with optional covariate columns) is split in time into train, validation and test
segments. A window at origin t reads the `lookback` values before t and predicts the `horizon`
values from t on; a segment's windows are all those whose targets lie inside it (rolling origin),
so the test windows are every window of the held-back final segment, and the lookback of the first
ones reaches back into the validation data, as it would in use.

The network sees transformed values: optional log1p, optional first differences, then
standardization with the training segment's mean and std only. Each batch carries what undoes
this (`anchor`: the last transformed level before the origin) and the original-scale targets, so
metrics are computed on the original scale.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightsuite.data.batches import ResidentDataModule, loader
from lightsuite.errors import ConfigError

STAGES = ("train", "val", "test")


class SeriesTransform:
    """log1p → differences → standardization, fitted on the training segment; inverted per window."""

    def __init__(self, log: bool, difference: bool) -> None:
        self.log, self.difference = log, difference
        self.mean = self.std = 0.0
        self.cov_mean = self.cov_std = np.zeros(0)

    def levels(self, y: np.ndarray) -> np.ndarray:
        """The series after log1p, before differencing (what differences are cumulated back onto)."""
        if self.log:
            if (y <= -1).any():
                raise ConfigError(
                    f"data.log=true needs values > -1 (log1p), but the series has {y.min():g}; "
                    "set data.log=false"
                )
            return np.log1p(y)
        return y

    def fit(self, y: np.ndarray, covariates: np.ndarray, n_train: int) -> None:
        """Standardization statistics from the first `n_train` points only."""
        z = self.levels(y[:n_train])
        d = np.diff(z) if self.difference else z
        self.mean, self.std = float(d.mean()), float(d.std()) or 1.0
        cov = covariates[:n_train]
        self.cov_mean = cov.mean(axis=0)
        self.cov_std = np.where(cov.std(axis=0) > 0, cov.std(axis=0), 1.0)

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Scaled values aligned with `y` (the first one is NaN when differencing)."""
        z = self.levels(y)
        d = np.concatenate([[np.nan], np.diff(z)]) if self.difference else z
        return (d - self.mean) / self.std

    def inverse(self, scaled: Tensor, anchor: Tensor) -> Tensor:
        """Forecasts (batch, horizon) in scaled units back to the original scale."""
        d = scaled.double() * self.std + self.mean
        z = anchor.double().unsqueeze(1) + d.cumsum(dim=1) if self.difference else d
        return torch.expm1(z) if self.log else z


class SeriesDataModule(ResidentDataModule):
    """Forecasting windows of one series; subclasses implement `load_series()`.

    The windows are tensors on the training device (`ResidentDataModule`, data/batches.py); the
    series itself, its times and the transform stay on the host for the baselines and the plots.
    """

    def __init__(
        self,
        lookback: int = 24,
        horizon: int = 1,
        period: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        log: bool = False,
        difference: bool = False,
        recursive: bool = False,
        batches_per_step: int = 1,
        device_resident: bool = True,
    ) -> None:
        super().__init__(device_resident)
        for key, value in (("lookback", lookback), ("horizon", horizon), ("period", period)):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        for key, value in (("batch_size", batch_size), ("batches_per_step", batches_per_step)):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ConfigError(f"data.{key}={value} must be in (0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} leaves "
                "no training data; make them sum to less than 1"
            )
        self.lookback, self.horizon, self.period = lookback, horizon, period
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.recursive = recursive
        self.batches_per_step = batches_per_step
        self.num_covariates = 0  # set by a subclass that reads covariate columns
        self.transform = SeriesTransform(log, difference)
        self.series: np.ndarray | None = None
        self.windows: dict[str, dict[str, Tensor]] = {}

    @property
    def net_kwargs(self) -> dict[str, int]:
        """Known from the config alone: the target plus each covariate in, H values (or one) out."""
        return {"input_size": 1 + self.num_covariates, "output_size": 1 if self.recursive else self.horizon}

    def load_series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target (N,), covariates (N, C), times (N,)), in time order."""
        raise NotImplementedError

    def split_sizes(self, n: int) -> tuple[int, int]:
        """(n_train, n_val): the first points train, the next validate, the last `test_fraction` test."""
        n_test = round(self.test_fraction * n)
        n_val = round(self.val_fraction * n)
        return n - n_val - n_test, n_val

    def origins(self, stage: str) -> np.ndarray:
        """Forecast origins of a segment: every t whose targets t..t+H-1 all lie inside it."""
        n = len(self.series)
        n_train, n_val = self.split_sizes(n)
        first_input = 1 if self.transform.difference else 0
        start, end = {
            "train": (first_input + self.lookback, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n),
        }[stage]
        return np.arange(max(start, first_input + self.lookback), end - self.horizon + 1)

    def setup(self, stage: str | None = None) -> None:
        if self.series is None:
            self.windows = self.cut_windows()
        # on every call: a later fit or test may run on another device
        self.windows = {s: self.place(w) for s, w in self.windows.items()}

    def cut_windows(self) -> dict[str, dict[str, Tensor]]:
        """Each segment's windows as host tensors (`setup` places them); reads and transforms the series."""
        y, cov, times = self.load_series()
        n = len(y)
        self.series, self.times = y.astype(np.float64), times
        n_train = self.split_sizes(n)[0]
        counts = {s: len(self.origins(s)) for s in STAGES}
        if min(counts.values()) < 1:
            need = self.lookback + self.horizon + (1 if self.transform.difference else 0)
            raise ConfigError(
                f"data: {n} rows give {counts['train']} train, {counts['val']} val and {counts['test']} "
                f"test windows for lookback={self.lookback} + horizon={self.horizon}; each segment needs "
                f"at least {self.horizon} rows and the training one {need}: use a longer series, a smaller "
                "data.lookback/data.horizon, or larger data.val_fraction/data.test_fraction"
            )
        self.transform.fit(self.series, cov, n_train)
        scaled = self.transform.forward(self.series)
        levels = self.transform.levels(self.series)
        cov_scaled = (cov - self.transform.cov_mean) / self.transform.cov_std
        features = np.concatenate([scaled[:, None], cov_scaled], axis=1)
        steps = np.arange(self.horizon)
        lags = np.arange(-self.lookback, 0)
        windows = {}
        for s in STAGES:
            t = self.origins(s)
            windows[s] = {
                "x": torch.tensor(features[t[:, None] + lags], dtype=torch.float32),
                "y": torch.tensor(scaled[t[:, None] + steps], dtype=torch.float32),
                # covariates over the horizon: what a recursive forecast feeds beside its own outputs
                "future": torch.tensor(cov_scaled[t[:, None] + steps], dtype=torch.float32),
                "anchor": torch.tensor(levels[t - 1], dtype=torch.float64),
                "actual": torch.tensor(self.series[t[:, None] + steps], dtype=torch.float64),
                "origin": torch.tensor(t, dtype=torch.long),
            }
        return windows

    def train_dataloader(self) -> DataLoader:
        return loader(
            self.windows["train"],
            self.batch_size,
            shuffle=True,
            group=self.batches_per_step,
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader:
        return loader(self.windows["val"], self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return loader(self.windows["test"], self.eval_batch_size)

    def train_series(self) -> np.ndarray:
        """The training segment on the original scale (for MASE's scale and the baselines' fits)."""
        return self.series[: self.split_sizes(len(self.series))[0]]


class SunspotsDataModule(SeriesDataModule):
    """Yearly sunspot numbers 1700-2008 shipped with statsmodels (309 values, no download; period 11)."""

    def load_series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from statsmodels.datasets import sunspots

        frame = sunspots.load_pandas().data
        return frame["SUNACTIVITY"].to_numpy(float), np.zeros((len(frame), 0)), frame["YEAR"].to_numpy()

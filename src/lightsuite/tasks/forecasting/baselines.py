"""Classical forecasts on the network's own test windows: naive, seasonal naive, drift, ETS, ARIMA.

Each baseline forecasts `horizon` values from every origin t using only the observations before t.
ETS and ARIMA are fitted once, on the training segment only (ARIMA's order chosen there by AIC over
a stated grid, among the fits whose likelihood optimization converged: a fit that stopped early
can report a low AIC and forecast badly); at each test origin the fitted parameters are applied
to the history up to that origin (`results.apply`, no refit), so no test value ever enters a fit.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

NAMES = ("naive", "seasonal_naive", "drift", "ets", "arima")


def naive(series: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last value before the origin, repeated."""
    return np.repeat(series[origins - 1, None], horizon, axis=1)


def seasonal_naive(series: np.ndarray, origins: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """The value one season before each target (the last observed season, repeated)."""
    k = np.arange(horizon)
    return series[origins[:, None] + k - period * (k // period + 1)]


def drift(series: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The line from the first observation through the last one before the origin, extended."""
    last = series[origins - 1]
    slope = (last - series[0]) / np.maximum(origins - 1, 1)
    return last[:, None] + slope[:, None] * np.arange(1, horizon + 1)


@dataclass
class Fits:
    """What the statsmodels fits left behind: counts for one summary line, the chosen ARIMA order."""

    fits: int = 0
    failed: int = 0
    unconverged: int = 0
    warnings: int = 0
    arima_order: tuple[int, int, int] | None = None
    categories: set[str] = field(default_factory=set)

    def summary(self) -> str:
        order = f"; ARIMA order by AIC {self.arima_order}" if self.arima_order else ""
        kinds = f" ({', '.join(sorted(self.categories))})" if self.categories else ""
        failed = f", {self.failed} failed" if self.failed else ""
        unconverged = f", {self.unconverged} did not converge" if self.unconverged else ""
        return (
            f"baselines: {self.fits} statsmodels fits{failed}{unconverged}, "
            f"{self.warnings} warnings{kinds} silenced{order}"
        )


def _quiet(fits: Fits, fn: Callable[[], object]) -> object | None:
    """Run one statsmodels call, counting its warnings instead of printing them; None if it fails.

    A result whose optimizer did not converge is marked `converged = False`.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except (ValueError, np.linalg.LinAlgError, IndexError):
            fits.failed += 1
            result = None
    fits.warnings += len(caught)
    names = {w.category.__name__ for w in caught}
    fits.categories.update(names)
    if result is not None and "ConvergenceWarning" in names:
        fits.unconverged += 1
        result.converged = False
    return result


def _from_origins(results, series: np.ndarray, origins: np.ndarray, horizon: int, fits: Fits) -> np.ndarray:
    """The fitted model's forecasts from each origin, its parameters applied to the history so far."""
    out = np.empty((len(origins), horizon))
    for row, t in enumerate(origins):
        applied = _quiet(fits, lambda t=t: results.apply(series[:t]))
        out[row] = np.asarray(applied.forecast(horizon)) if applied is not None else np.nan
    return out


def ets(
    train: np.ndarray, series: np.ndarray, origins: np.ndarray, horizon: int, period: int, fits: Fits
) -> np.ndarray:
    """Additive damped-trend exponential smoothing, seasonal with `period` when the data allow."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    seasonal = period if period > 1 and len(train) >= 2 * period + 2 else None
    model = ExponentialSmoothing(
        train, trend=True, damped_trend=True, seasonal=seasonal, initialization_method="concentrated"
    )
    fits.fits += 1
    results = _quiet(fits, lambda: model.fit(disp=False))
    if results is None:
        return np.full((len(origins), horizon), np.nan)
    return _from_origins(results, series, origins, horizon, fits)


def arima_grid(max_order: Sequence[int]) -> list[tuple[int, int, int]]:
    """Every (p, d, q) with p <= max p, d <= max d, q <= max q."""
    p, d, q = max_order
    return list(itertools.product(range(p + 1), range(d + 1), range(q + 1)))


def arima(
    train: np.ndarray,
    series: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    max_order: Sequence[int],
    fits: Fits,
) -> np.ndarray:
    """ARIMA with the order of lowest AIC on the training segment, over `arima_grid(max_order)`."""
    from statsmodels.tsa.arima.model import ARIMA

    candidates = []
    for order in arima_grid(max_order):
        fits.fits += 1
        results = _quiet(fits, lambda order=order: ARIMA(train, order=order).fit())
        if results is not None and np.isfinite(results.aic):
            candidates.append((not getattr(results, "converged", True), results.aic, order, results))
    best = None
    if candidates:  # converged fits first, then the lowest AIC
        *_, fits.arima_order, best = min(candidates, key=lambda c: c[:2])
    if best is None:
        return np.full((len(origins), horizon), np.nan)
    return _from_origins(best, series, origins, horizon, fits)


def forecast_all(
    names: Sequence[str],
    series: np.ndarray,
    n_train: int,
    origins: np.ndarray,
    horizon: int,
    period: int,
    arima_max_order: Sequence[int],
) -> tuple[dict[str, np.ndarray], Fits]:
    """Forecasts (len(origins), horizon) of each named baseline, and the fits' summary."""
    fits = Fits()
    train = series[:n_train]
    makers = {
        "naive": lambda: naive(series, origins, horizon),
        "seasonal_naive": lambda: seasonal_naive(series, origins, horizon, period),
        "drift": lambda: drift(series, origins, horizon),
        "ets": lambda: ets(train, series, origins, horizon, period, fits),
        "arima": lambda: arima(train, series, origins, horizon, arima_max_order, fits),
    }
    return {name: makers[name]() for name in names}, fits

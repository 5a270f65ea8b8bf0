"""The figures of a report: metric curves per setting (mean and band over seeds), metric vs hyperparameter.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): no global state, no display
needed. Sizes and fonts are chosen to stay readable on a slide.
"""

from __future__ import annotations

import functools
import io
import math
import statistics
from collections.abc import Callable, Sequence
from typing import ParamSpec

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from lightsuite.reporting.curves import Point
from lightsuite.reporting.runs import DONE, Job
from lightsuite.reporting.tables import SEED, Setting

STYLE = {
    "font.size": 13,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "legend.fontsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
SIZE = (9.0, 5.5)
DPI = 100
P = ParamSpec("P")
# values of a hyperparameter spanning at least this ratio go on a log axis
LOG_RATIO = 10.0


def _styled(build: Callable[P, Figure | None]) -> Callable[P, Figure | None]:
    """Build a figure under the report's style; artists take rc values when created."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure | None:
        with mpl.rc_context(STYLE):
            return build(*args, **kwargs)

    return wrapper


def per_epoch(jobs: Sequence[Job], metric: str) -> bool:
    """A metric logged at most once per epoch (validation, epoch means) is drawn over epochs."""
    series = [job.history[metric] for job in jobs if metric in job.history]
    if not series:
        return False
    for points in series:
        epochs = [p.epoch for p in points]
        if None in epochs or len(set(epochs)) != len(epochs):
            return False
    return True


def curve_metric(jobs: Sequence[Job], metric: str) -> str | None:
    """What to draw for `metric`: its own series where a job logged one (the CSV's per-step
    `train/loss`), else its epoch mean `<metric>_epoch` (a run without the CSV logger has only that)."""
    for name in (metric, f"{metric}_epoch"):
        if any(job.history.get(name) for job in jobs):
            return name
    return None


@_styled
def curves_figure(groups: Sequence[Setting], metric: str) -> Figure | None:
    """`metric` over training, one colour per setting: each job thin, the mean over seeds bold with a band.

    The band is the mean ± one sample standard deviation over the seeds that logged that point;
    unfinished, pruned and failed jobs are dashed. Returns None when no job logged `metric`.
    """
    jobs = [job for group in groups for job in group.jobs if job.history.get(metric)]
    if not jobs:
        return None
    epochs = per_epoch(jobs, metric)
    fig = _figure()
    ax = fig.add_subplot()
    colors = _colors(len(groups))
    for color, group in zip(colors, groups, strict=True):
        logged = [job for job in group.jobs if job.history.get(metric)]
        if not logged:
            continue
        series = [_xy(job.history[metric], epochs) for job in logged]
        many = len(logged) > 1
        for job, (xs, ys) in zip(logged, series, strict=True):
            style = "-" if job.status == DONE else "--"
            label = None if many else f"{group.label}{_status_note(job)}"
            ax.plot(
                xs, ys, style, color=color, lw=1.0 if many else 2.2, alpha=0.45 if many else 1.0, label=label
            )
        if many:
            xs, mean, low, high = mean_band(series)
            ax.fill_between(xs, low, high, color=color, alpha=0.2, lw=0)
            seeds = f"mean ± s.d. of {len(logged)} seeds"
            (line,) = ax.plot(xs, mean, "-", color=color, lw=2.6, label=f"{group.label} ({seeds})")
            line.set_gid(f"mean {group.label}")
    if epochs:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch" if epochs else "optimizer step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over {'epochs' if epochs else 'steps'}")
    _legend(ax, len(groups))
    fig.tight_layout()
    return fig


def mean_band(series: Sequence[tuple[list[float], list[float]]]) -> tuple[list[float], ...]:
    """Mean and mean ± sample s.d. at every x any series has (over the series that have it)."""
    at: dict[float, list[float]] = {}
    for xs, ys in series:
        for x, y in zip(xs, ys, strict=True):
            at.setdefault(x, []).append(y)
    xs = sorted(at)
    mean = [statistics.fmean(at[x]) for x in xs]
    std = [statistics.stdev(at[x]) if len(at[x]) > 1 else 0.0 for x in xs]
    return (
        xs,
        mean,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=False)],
    )


def numeric_keys(jobs: Sequence[Job], keys: Sequence[str]) -> list[str]:
    """Swept keys (not the seed) whose values are all numbers, with two or more among finished jobs."""
    out = []
    for key in keys:
        if key == SEED:
            continue
        values = [_number(job.value(key)) for job in jobs if job.status == DONE]
        if all(v is not None for v in values) and len(set(values)) > 1:
            out.append(key)
    return out


@_styled
def hparam_figure(
    jobs: Sequence[Job], key: str, others: Sequence[str], metrics: Sequence[str]
) -> Figure | None:
    """Final value of each metric against the hyperparameter `key`, one panel per metric.

    Finished jobs only; one line per combination of the other swept keys (`others`), through the
    mean over seeds with the sample s.d. as error bars; each job is a dot. The x axis is
    logarithmic when the values span a decade or more.
    """
    done = [job for job in jobs if job.status == DONE]
    panels = [m for m in metrics if any(_finite(job.metric(m)) for job in done)]
    if not panels:
        return None
    xs_all = [_number(job.value(key)) for job in done]
    log_x = min(xs_all) > 0 and max(xs_all) / min(xs_all) >= LOG_RATIO
    fig = _figure(width=max(SIZE[0], 5.2 * len(panels)))
    lines: dict[tuple, list[Job]] = {}
    for job in done:
        lines.setdefault(tuple(job.value(k) for k in others if k not in (key, SEED)), []).append(job)
    label_keys = [k for k in others if k not in (key, SEED)]
    colors = _colors(len(lines))
    for i, metric in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for color, (values, members) in zip(colors, lines.items(), strict=True):
            points: dict[float, list[float]] = {}
            for job in members:
                y = job.metric(metric)
                if _finite(y):
                    points.setdefault(_number(job.value(key)), []).append(y)
            if not points:
                continue
            xs = sorted(points)
            for x in xs:
                ax.plot([x] * len(points[x]), points[x], "o", color=color, alpha=0.4, ms=5)
            mean = [statistics.fmean(points[x]) for x in xs]
            err = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
            label = ", ".join(f"{k}={v}" for k, v in zip(label_keys, values, strict=True)) or None
            bars = ax.errorbar(xs, mean, yerr=err, fmt="-s", color=color, lw=2.2, capsize=4, label=label)
            bars.lines[0].set_gid(f"mean {label or metric}")
        if log_x:
            ax.set_xscale("log")
        _ticks_at(ax, sorted(set(xs_all)))
        ax.set_xlabel(f"{key} (log scale)" if log_x else key)
        ax.set_ylabel(f"final {metric}")
        ax.set_title(f"final {metric} vs {key}")
        if label_keys and i == len(panels) - 1:
            _legend(ax, len(lines))
    fig.tight_layout()
    return fig


def _figure(width: float = SIZE[0]) -> Figure:
    return Figure(figsize=(width, SIZE[1]), dpi=DPI)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _legend(ax: Axes, entries: int) -> None:
    """Inside the axes for a few entries; beside them for many, where it would hide the lines."""
    if entries <= 6:
        ax.legend(loc="best", framealpha=0.85)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _ticks_at(ax: Axes, values: Sequence[float]) -> None:
    """Label the swept values themselves (`0.001 0.01 0.1`), not 2x10^-3-style minor ticks."""
    if len(values) > 8:
        return
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _colors(n: int) -> list[str]:
    """Distinct colours: tab10 for up to 10 settings, then the 20-colour map."""
    cmap = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [mpl.colors.to_hex(cmap(i % cmap.N)) for i in range(max(n, 1))]


def _xy(points: Sequence[Point], epochs: bool) -> tuple[list[float], list[float]]:
    # Lightning counts epochs from 0; a value logged in epoch 0 is the state after one epoch
    xs = [float(p.epoch + 1) if epochs else float(p.step) for p in points]
    return xs, [p.value for p in points]


def _status_note(job: Job) -> str:
    return "" if job.status == DONE else f" ({job.status_text})"


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)

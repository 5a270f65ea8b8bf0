"""The figures of the results page (`docs/results/<claim>.png`), one drawing per claim (claims.py)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lightsuite.reporting.runs import DONE, Job
from lightsuite.reporting.tables import Setting

if TYPE_CHECKING:
    from lightsuite.reporting.claims import Claim, Column

TRIVIAL_ADDING_MSE = 1 / 6  # predicting the mean sum 1 of two U(0, 1): the variance of their sum
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}  # % test error, CIFAR-10


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=80)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _epoch_means(
    jobs: Sequence[Job], name: str, transform: Callable[[float], float]
) -> tuple[list, list, list]:
    """Per epoch: the mean and s.d. over seeds of the last value logged in that epoch."""
    per_epoch: dict[int, list[float]] = {}
    for job in jobs:
        last: dict[int, float] = {}
        for point in job.history.get(name, []):
            if point.epoch is not None:
                last[point.epoch] = transform(point.value)
        for epoch, value in last.items():
            per_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(per_epoch)
    means = [statistics.fmean(per_epoch[e]) for e in epochs]
    sds = [statistics.stdev(per_epoch[e]) if len(per_epoch[e]) > 1 else 0.0 for e in epochs]
    return [e + 1 for e in epochs], means, sds


def degradation_figure(claim: Claim, groups: list[Setting]) -> Any:
    fig, ax = _axes("Degradation: thin = training error, bold = validation error", "epoch", "error")
    colors = {"20": "#1f77b4", "56": "#2ca02c", "110": "#d62728"}
    for group in groups:
        model = group.values.get("model", "")
        depth = "".join(c for c in model if c.isdigit())
        style = "--" if model.startswith("plain") else "-"
        for name, width in (("train/acc", 0.9), ("val/acc", 2.2)):
            x, mean, sd = _epoch_means(group.jobs, name, lambda v: 1.0 - v)
            if not x:
                continue
            label = f"{model} ({'train' if name.startswith('train') else 'val'})"
            ax.plot(x, mean, style, color=colors.get(depth, "gray"), linewidth=width, label=label)
            low = [m - s for m, s in zip(mean, sd, strict=True)]
            high = [m + s for m, s in zip(mean, sd, strict=True)]
            ax.fill_between(x, low, high, color=colors.get(depth, "gray"), alpha=0.08)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _by_value(groups: list[Setting], key: str, column: Column) -> dict[str, tuple[float, float]]:
    out = {}
    for group in groups:
        values = [v for v in (column.read(j) for j in group.jobs if j.status == DONE) if v is not None]
        if values:
            out[group.values.get(key, "")] = (
                statistics.fmean(values),
                statistics.stdev(values) if len(values) > 1 else 0.0,
            )
    return out


def depth_figure(claim: Claim, groups: list[Setting]) -> Any:
    fig, ax = _axes("Test error by depth (ResNets)", "layers", "test error (%)")
    found = _by_value(groups, "model", claim.columns[0])
    depths = sorted(int("".join(c for c in m if c.isdigit())) for m in found)
    if depths:
        means = [100 * found[f"resnet{d}"][0] for d in depths]
        sds = [100 * found[f"resnet{d}"][1] for d in depths]
        ax.errorbar(depths, means, yerr=sds, marker="o", capsize=3, label="measured (digits, CPU scale)")
    ax.plot(list(PAPER_TABLE6), list(PAPER_TABLE6.values()), "s--", color="gray", label="paper (CIFAR-10)")
    ax.set_xscale("log")
    ax.set_xticks(list(PAPER_TABLE6), [str(d) for d in PAPER_TABLE6])
    ax.legend(fontsize=8)
    return fig


def long_lag_figure(claim: Claim, groups: list[Setting]) -> Any:
    fig, ax = _axes("The adding problem: test MSE against the lag T", "sequence length T", "test MSE")
    for model in ("rnn", "gru", "lstm"):
        mine = [g for g in groups if g.values.get("model") == model]
        found = _by_value(mine, "data.seq_len", claim.columns[0])
        lags = sorted(found, key=int)
        if lags:
            ax.errorbar(
                [int(t) for t in lags],
                [found[t][0] for t in lags],
                yerr=[found[t][1] for t in lags],
                marker="o",
                capsize=3,
                label=model.upper(),
            )
    ax.axhline(TRIVIAL_ADDING_MSE, color="gray", linestyle=":", label="trivial (predict 1): 0.167")
    ax.set_yscale("log")  # learned is 1e-5..1e-3, stuck is 0.17: both readable
    ax.legend(fontsize=8)
    return fig


def _finished(claim: Claim, group: Setting, index: int) -> list[float]:
    values = (claim.columns[index].read(j) for j in group.jobs if j.status == DONE)
    return [v for v in values if v is not None]


def _bars(
    ax: Any, claim: Claim, groups: list[Setting], column: int, reference: int | None, reference_label: str
) -> None:
    """One bar per setting (mean ± s.d. of `column`); `reference`: another column marked over each bar."""
    labels, means, sds, marks = [], [], [], []
    for group in groups:
        values = _finished(claim, group, column)
        if values:
            labels.append(", ".join(v for v in group.values.values()))
            means.append(statistics.fmean(values))
            sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            refs = _finished(claim, group, reference) if reference is not None else []
            marks.append(statistics.fmean(refs) if refs else None)
    ax.bar(range(len(labels)), means, yerr=sds, capsize=3, color="#4c72b0")
    shown = [(i, m) for i, m in enumerate(marks) if m is not None]
    if shown:
        ax.scatter(
            *zip(*shown, strict=True), marker="_", s=900, color="#d62728", label=reference_label, zorder=3
        )
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)


def bars_figure(
    title: str, ylabel: str, column: int, reference: int | None = None, reference_label: str = ""
) -> Callable[[Claim, list[Setting]], Any]:
    """A figure of `_bars`."""

    def draw(claim: Claim, groups: list[Setting]) -> Any:
        fig, ax = _axes(title, "", ylabel)
        _bars(ax, claim, groups, column, reference, reference_label)
        fig.tight_layout()
        return fig

    return draw


def gan_figure(claim: Claim, groups: list[Setting]) -> Any:
    """Modes covered per setting, and below, per loss, one run's samples over the ring's true modes
    (`claim_runs.gan_samples`: the first finished seed, unpacked where it ran)."""
    import numpy as np
    from matplotlib.figure import Figure

    from lightsuite.reporting.claim_runs import GAN_SAMPLES, gan_modes, gan_sample_jobs

    picked = gan_sample_jobs([job for group in groups for job in group.jobs])
    fig = Figure(figsize=(8.0, 6.4), dpi=80)
    grid = fig.add_gridspec(2, max(len(picked), 1), height_ratios=(1.2, 1.0))
    bars = fig.add_subplot(grid[0, :])
    bars.set_title("Modes of the ring covered (of 8); below: samples of one run per loss", fontsize=11)
    bars.set_ylabel("modes covered")
    bars.grid(alpha=0.3)
    _bars(bars, claim, groups, 0, None, "")
    for i, (loss, job) in enumerate(picked.items()):
        ax = fig.add_subplot(grid[1, i])
        centers = np.asarray(gan_modes(job), dtype=float).reshape(-1, 2)
        ax.scatter(centers[:, 0], centers[:, 1], marker="x", color="#d62728", s=40, zorder=3)
        file = job.path / GAN_SAMPLES
        if file.is_file():
            points = np.load(file)
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, color="#4c72b0")
        else:
            ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)
        pack, seed = job.value("task.pack"), job.value("seed")
        ax.set_title(f"{loss} (pack {pack}, seed {seed})", fontsize=8)
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def bpc_figure(claim: Claim, groups: list[Setting]) -> Any:
    fig, ax = _axes(
        "Character LSTM on Python's standard library", "evaluation", "validation bits per character"
    )
    for group in groups:
        for job in group.jobs:
            points = job.history.get("val/bpc", [])
            ax.plot(range(1, len(points) + 1), [p.value for p in points], marker="o")
    return fig

"""The lecture's claims as sweeps anyone can re-run, and `docs/results.md` built from their run dirs.

Each claim is a multirun preset, `conf/experiment/claims/<name>.yaml`, writing into
`outputs/claims/<sweep>/<overrides>/`: running it again finds its finished jobs (they return their
`metrics.json`) and continues killed ones from their checkpoints, so `make results` is incremental.
What a claim says, where it comes from, which numbers the paper printed and how to read the runs
(the table's columns, the figure, the one sentence on whether it held) is written down here; the
numbers themselves come only from the run dirs.

    lightsuite-report --claims                       # run what is missing, then write docs/results.md
    lightsuite-report --claims=forecasting,char_lm   # some of them
    lightsuite-report --claims run=false             # the page from what is on disk
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lightsuite.errors import ConfigError
from lightsuite.reporting.runs import DONE, Job, find_jobs
from lightsuite.reporting.tables import SEED, Setting, markdown, mean_std, settings

TRIVIAL_ADDING_MSE = 1 / 6  # predicting the mean sum 1 of two U(0, 1): the variance of their sum


@dataclass(frozen=True)
class Column:
    """A table column: a header and how to read it from one finished job (None: not logged)."""

    header: str
    read: Callable[[Job], float | None]


def metric(name: str) -> Callable[[Job], float | None]:
    return lambda job: job.metric(name)


def error_of(name: str) -> Callable[[Job], float | None]:
    """1 - accuracy: the papers plot errors."""

    def read(job: Job) -> float | None:
        value = job.metric(name)
        return None if value is None else 1.0 - value

    return read


@dataclass(frozen=True)
class Claim:
    """One claim of the lecture, its sweep and how its runs are read."""

    name: str  # conf/experiment/claims/<name>.yaml
    title: str
    statement: str  # the claim in one sentence, with its source
    sweep: str  # outputs/claims/<sweep>: claims that share jobs share a sweep dir
    params: dict[str, list[str]]  # the swept values (what selects this claim's jobs in the dir)
    columns: tuple[Column, ...]
    figure: Callable[[Claim, list[Setting]], Any]
    verdict: Callable[[dict[str, dict[str, float]]], str]
    published: dict[str, str] = field(default_factory=dict)  # setting label -> the paper's numbers
    scale: str = ""  # how the CPU-scale sweep differs from the paper's

    @property
    def keys(self) -> list[str]:
        return [k for k in self.params if k != SEED]


# --- verdicts -----------------------------------------------------------------------------------------
def _mean(table: dict[str, dict[str, float]], setting: str, column: str) -> float:
    return table.get(setting, {}).get(column, math.nan)


def _degradation_verdict(table: dict[str, dict[str, float]]) -> str:
    plain = [_mean(table, f"model=plain{d}", "train error") for d in (20, 56, 110)]
    res = [_mean(table, f"model=resnet{d}", "train error") for d in (20, 56, 110)]
    if any(math.isnan(v) for v in plain + res):
        return "Not all settings have finished yet."
    rises = plain[1] > plain[0] and plain[2] > plain[0]
    fixed = all(r < p for r, p in zip(res[1:], plain[1:], strict=True))
    pl = " → ".join(f"{v:.3f}" for v in plain)
    rs = " → ".join(f"{v:.3f}" for v in res)
    held = "held" if rises and fixed else "did not hold"
    return (
        f"Training error of the plain nets at 20 → 56 → 110 layers: {pl} "
        f"({'rises' if rises else 'does not rise'} "
        f"with depth); of the residual nets: {rs} ({'below' if fixed else 'not below'} the plain twins "
        f"from 56 layers on). The claim {held} at this scale."
    )


def _depth_verdict(table: dict[str, dict[str, float]]) -> str:
    depths = (20, 32, 44, 56, 110)
    errs = [_mean(table, f"model=resnet{d}", "test error") for d in depths]
    done = [(d, e) for d, e in zip(depths, errs, strict=True) if not math.isnan(e)]
    if len(done) < 2:
        return "Not enough settings have finished yet."
    falls = all(b[1] <= a[1] for a, b in itertools.pairwise(done))
    shown = ", ".join(f"{d}: {e:.3f}" for d, e in done)
    held = "fell with depth throughout, as in the paper" if falls else "did not fall monotonically with depth"
    return f"Test error on digits by depth ({shown}) {held}; digits at 8x8 is far from CIFAR-10's difficulty."


def _long_lag_verdict(table: dict[str, dict[str, float]]) -> str:
    rows = []
    for model in ("rnn", "gru", "lstm"):
        mse = _mean(table, f"model={model}, data.seq_len=100", "test MSE")
        if not math.isnan(mse):
            rows.append((model, mse))
    if not rows:
        return "The T = 100 settings have not finished yet."
    shown = ", ".join(f"{m.upper()} {v:.3f}" for m, v in rows)
    learned = [m for m, v in rows if v < 0.5 * TRIVIAL_ADDING_MSE]
    stuck = [m for m, v in rows if v > 0.8 * TRIVIAL_ADDING_MSE]
    held = "rnn" in stuck and any(m in learned for m in ("gru", "lstm"))
    return (
        f"At T = 100 the test MSE was {shown} (trivial: {TRIVIAL_ADDING_MSE:.3f}); "
        f"below half the trivial level: {', '.join(m.upper() for m in learned) or 'none'}. "
        f"The claim {'held' if held else 'did not hold'} at this budget."
    )


def _gan_verdict(table: dict[str, dict[str, float]]) -> str:
    if not table:
        return "No setting has finished yet."
    ranked = sorted(table.items(), key=lambda kv: -kv[1].get("modes covered", -1))
    best, values = ranked[0]
    by_pack = {p: [v["modes covered"] for k, v in table.items() if f"task.pack={p}" in k] for p in ("1", "2")}
    packs = ""
    if by_pack["1"] and by_pack["2"]:
        one, two = statistics.fmean(by_pack["1"]), statistics.fmean(by_pack["2"])
        packs = f" Packing two samples: {two:.2f} modes on average against {one:.2f} unpacked."
    return f"Most modes covered: {best} ({values['modes covered']:.2f} of 8).{packs}"


def _forecast_verdict(table: dict[str, dict[str, float]]) -> str:
    lines = []
    for horizon in ("1", "11"):
        nets = {k: v["MASE"] for k, v in table.items() if f"data.horizon={horizon}" in k and "MASE" in v}
        base = {k: v["best baseline MASE"] for k, v in table.items() if f"data.horizon={horizon}" in k}
        if not nets or not base:
            continue
        net, mase = min(nets.items(), key=lambda kv: kv[1])
        baseline = min(base.values())
        verdict = "beats" if mase < baseline else "does not beat"
        lines.append(
            f"H = {horizon}: the best network ({net.split(',')[0]}, MASE {mase:.3f}) {verdict} the best "
            f"classical baseline (MASE {baseline:.3f})"
        )
    return "; ".join(lines) + "." if lines else "No setting has finished yet."


def _char_verdict(table: dict[str, dict[str, float]]) -> str:
    bpc = next((v.get("test bpc") for v in table.values()), None)
    if bpc is None or math.isnan(bpc):
        return "The run has not finished yet."
    return f"Test bits per character: {bpc:.3f} (8 for raw bytes, ~4.4 for a character unigram model)."


# --- figures ------------------------------------------------------------------------------------------
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


def _degradation_figure(claim: Claim, groups: list[Setting]) -> Any:
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


PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}  # % test error, CIFAR-10


def _depth_figure(claim: Claim, groups: list[Setting]) -> Any:
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


def _long_lag_figure(claim: Claim, groups: list[Setting]) -> Any:
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
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def _bars_figure(title: str, ylabel: str, column: int) -> Callable[[Claim, list[Setting]], Any]:
    def draw(claim: Claim, groups: list[Setting]) -> Any:
        fig, ax = _axes(title, "", ylabel)
        labels, means, sds = [], [], []
        for group in groups:
            values = [
                v
                for v in (claim.columns[column].read(j) for j in group.jobs if j.status == DONE)
                if v is not None
            ]
            if values:
                labels.append(", ".join(v for v in group.values.values()))
                means.append(statistics.fmean(values))
                sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.bar(range(len(labels)), means, yerr=sds, capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        fig.tight_layout()
        return fig

    return draw


def _bpc_figure(claim: Claim, groups: list[Setting]) -> Any:
    fig, ax = _axes(
        "Character LSTM on Python's standard library", "evaluation", "validation bits per character"
    )
    for group in groups:
        for job in group.jobs:
            points = job.history.get("val/bpc", [])
            ax.plot(range(1, len(points) + 1), [p.value for p in points], marker="o")
    return fig


def _best_baseline(job: Job) -> float | None:
    values = [v for k, v in job.final.items() if k.startswith("baseline/") and k.endswith("/test/mase")]
    return min(values) if values else None


CLAIMS: dict[str, Claim] = {
    claim.name: claim
    for claim in (
        Claim(
            name="degradation",
            title="The degradation problem",
            statement=(
                "A deeper plain network has a higher *training* error than a shallower one, so the "
                "problem is optimization, not overfitting; residual connections remove it "
                "(He et al. 2016, Fig. 1 and 6)."
            ),
            sweep="resnets",
            params={
                "model": ["plain20", "resnet20", "plain56", "resnet56", "plain110", "resnet110"],
                "seed": ["1", "2", "3"],
            },
            columns=(
                Column("train error", error_of("train/acc")),
                Column("val error", error_of("val/acc")),
                Column("test error", error_of("test/acc")),
            ),
            figure=_degradation_figure,
            verdict=_degradation_verdict,
            scale="digits (8x8) for 20 epochs, 3 seeds; the paper: CIFAR-10, 64k steps",
        ),
        Claim(
            name="resnet_table",
            title="The CIFAR-10 ResNet table",
            statement=(
                "Deeper residual networks reach lower test error: ResNet-20/32/44/56/110 at "
                "8.75 / 7.51 / 7.17 / 6.97 / 6.43 % on CIFAR-10 with 0.27 / 0.46 / 0.66 / 0.85 / 1.7 M "
                "parameters (He et al. 2016, Table 6)."
            ),
            sweep="resnets",
            params={
                "model": ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"],
                "seed": ["1", "2", "3"],
            },
            columns=(
                Column("test error", error_of("test/acc")),
                Column("train error", error_of("train/acc")),
            ),
            figure=_depth_figure,
            verdict=_depth_verdict,
            published={
                f"model=resnet{d}": f"{PAPER_TABLE6[d]} % ({p} M params)"
                for d, p in zip(PAPER_TABLE6, (0.27, 0.46, 0.66, 0.85, 1.7), strict=True)
            },
            scale="digits for 20 epochs, 3 seeds: the trend only; CIFAR-10 with the paper's recipe: "
            "`experiment=claims/resnet_table_cifar10` on a GPU",
        ),
        Claim(
            name="long_lag",
            title="Long-term dependencies: the adding problem",
            statement=(
                "A plain RNN has difficulty carrying information over long lags; gated cells (LSTM, "
                "Hochreiter & Schmidhuber 1997; GRU) learn the adding problem where it stays at the "
                "trivial MSE."
            ),
            sweep="long_lag",
            params={
                "model": ["rnn", "gru", "lstm"],
                "data.seq_len": ["10", "50", "100"],
                "seed": ["1", "2", "3"],
            },
            columns=(Column("test MSE", metric("test/mse")), Column("val MSE", metric("val/mse"))),
            figure=_long_lag_figure,
            verdict=_long_lag_verdict,
            published={"model=lstm, data.seq_len=100": "LSTM solves T = 100 (Hochreiter & Schmidhuber 1997)"},
            scale="4 epochs of 200 steps, hidden 64, 3 seeds",
        ),
        Claim(
            name="gan_objectives",
            title="GAN objectives and mode coverage",
            statement=(
                "Which GAN objective covers all 8 modes of a ring of Gaussians with high-quality samples "
                "(Goodfellow et al. 2014's minimax and non-saturating losses, hinge, WGAN-GP), and "
                "whether packing "
                "two samples per discriminator input (PacGAN, Lin et al. 2018) helps."
            ),
            sweep="gan_objectives",
            params={
                "task.loss": ["minimax", "non_saturating", "hinge", "wgan_gp"],
                "task.pack": ["1", "2"],
                "seed": ["1", "2", "3"],
            },
            columns=(
                Column("modes covered", metric("test/modes_covered")),
                Column("high-quality share", metric("test/hq_ratio")),
            ),
            figure=_bars_figure("Modes of the ring covered (of 8)", "modes covered", 0),
            verdict=_gan_verdict,
            scale="16 epochs (the experiment: 64), 3 seeds",
        ),
        Claim(
            name="forecasting",
            title="Sequence models against classical forecasting (sunspots)",
            statement=(
                "On the yearly sunspot numbers, recurrent networks forecast one step and eleven years ahead "
                "(one solar cycle); the lecture compares them with naive, seasonal naive, drift, ETS "
                "and ARIMA."
            ),
            sweep="forecasting",
            params={"model": ["rnn", "gru", "lstm"], "data.horizon": ["1", "11"], "seed": ["1", "2", "3"]},
            columns=(
                Column("MASE", metric("test/mase")),
                Column("RMSE", metric("test/rmse")),
                Column("best baseline MASE", _best_baseline),
            ),
            figure=_bars_figure("Test MASE (below 1: better than the naive forecast)", "MASE", 0),
            verdict=_forecast_verdict,
            scale="the experiment as it stands (early stopping on val/mase), 3 seeds",
        ),
        Claim(
            name="char_lm",
            title="Character-level generation",
            statement=(
                "A character-level LSTM trained on source code learns to write text that looks like code "
                '(Karpathy 2015, "The unreasonable effectiveness of recurrent neural networks").'
            ),
            sweep="char_lm",
            params={"seed": ["1"]},
            columns=(Column("test bpc", metric("test/bpc")), Column("val bpc", metric("val/bpc"))),
            figure=_bpc_figure,
            verdict=_char_verdict,
            scale="5 epochs on the standard library's sources",
        ),
    )
}


# --- running and reading --------------------------------------------------------------------------------
def chosen(names: str | None) -> list[Claim]:
    """The claims `--claims=a,b` names (all when empty), or one line listing the known ones."""
    if not names or names == "all":
        return list(CLAIMS.values())
    picked = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in CLAIMS:
            raise ConfigError(f"--claims: no claim {name!r}; choose from {', '.join(CLAIMS)} (or all)")
        picked.append(CLAIMS[name])
    return picked


def run_claim(claim: Claim, root: Path, extra: Sequence[str] = ()) -> int:
    """Run (or continue) a claim's sweep under `root`/outputs/claims; its exit status."""
    env = {**os.environ, "LIGHTSUITE_ROOT": str(root)}
    cmd = [sys.executable, "-m", "lightsuite.train", f"experiment=claims/{claim.name}", *extra]
    print(f"claim {claim.name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env, cwd=root, check=False).returncode


def claim_jobs(claim: Claim, root: Path) -> list[Job]:
    """This claim's jobs in its sweep dir: those whose swept values are the claim's."""
    sweep = root / "outputs" / "claims" / claim.sweep
    if not sweep.is_dir():
        return []
    jobs = [j for j in find_jobs([sweep]) if j.name != "report" and not j.name.startswith(".")]
    return [j for j in jobs if all(j.value(k) in values for k, values in claim.params.items())]


def summarize(claim: Claim, jobs: Sequence[Job]) -> tuple[list[Setting], dict[str, dict[str, float]]]:
    """The claim's settings and, per setting label, each column's mean over its finished seeds."""
    groups = settings(jobs, claim.keys) if jobs else []
    table: dict[str, dict[str, float]] = {}
    for group in groups:
        row = {}
        for column in claim.columns:
            values = [v for v in (column.read(j) for j in group.jobs if j.status == DONE) if v is not None]
            if values:
                row[column.header] = statistics.fmean(values)
        if row:
            table[group.label] = row
    return groups, table


def _cells(claim: Claim, groups: list[Setting]) -> tuple[list[str], list[list[str]]]:
    header = [*claim.keys, "seeds", *(c.header for c in claim.columns)]
    if claim.published:
        header.append("published")
    rows = []
    for group in groups:
        done = [j for j in group.jobs if j.status == DONE]
        cells = [mean_std([v for v in (c.read(j) for j in done) if v is not None]) for c in claim.columns]
        row = [*group.values.values(), f"{len(done)}/{len(group.jobs)}", *cells]
        if claim.published:
            row.append(claim.published.get(group.label, ""))
        rows.append(row)
    return header, rows


def _spent(jobs: Sequence[Job]) -> tuple[float, float, str]:
    """(wall seconds from the first start to the last end, summed job seconds, the machine) of the jobs."""
    starts, ends, total, machine = [], [], 0.0, ""
    for job in jobs:
        prov = job.run.get("provenance") if isinstance(job.run.get("provenance"), dict) else {}
        for segment in prov.get("segments") or [prov]:
            start, end = _time(segment.get("start")), _time(segment.get("end"))
            if start is not None and end is not None:
                starts.append(start)
                ends.append(end)
                total += end - start
        if not machine and prov:
            devices = prov.get("devices") or {}
            cpus = devices.get("cpu_count") if isinstance(devices, dict) else None
            machine = f"{prov.get('host', '?')}, {cpus or '?'} CPUs"
    wall = max(ends) - min(starts) if starts else 0.0
    return wall, total, machine


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def write_results(claims: Sequence[Claim], root: Path, docs: Path) -> Path:
    """Write `docs/results.md` and its figures (`docs/results/<claim>.png`) from the run dirs."""
    figures = docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results: the lecture's claims, re-run",
        "",
        "[README](../README.md) · [report](report.md) · [lecture](lecture.md)",
        "",
        "Each section is one sweep, `lightsuite-train experiment=claims/<name>`; `make results` runs "
        "the ones "
        "that are not on disk (finished jobs are not run again, killed ones continue) and writes this page "
        "from their run dirs (`lightsuite-report --claims`). Tables: mean ± s.d. over the finished seeds. "
        f"Written {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()} "
        f"({os.cpu_count()} CPUs).",
        "",
    ]
    for i, claim in enumerate(claims, 1):
        jobs = claim_jobs(claim, root)
        groups, table = summarize(claim, jobs)
        lines += [f"## {i}. {claim.title}", "", claim.statement, ""]
        lines += [
            f"`lightsuite-train experiment=claims/{claim.name}`"
            + (f" ({claim.scale})" if claim.scale else ""),
            "",
        ]
        if not jobs:
            lines += ["*Not run yet: `make results` runs it.*", ""]
            continue
        wall, total, machine = _spent(jobs)
        done = sum(j.status == DONE for j in jobs)
        lines += [
            f"{done} of {len(jobs)} jobs finished; {_duration(wall)} from the first start to the last end "
            f"({_duration(total)} of job time) on {machine or 'an unrecorded machine'}.",
            "",
        ]
        header, rows = _cells(claim, groups)
        lines += [markdown(header, rows)]
        fig = claim.figure(claim, groups)
        if fig is not None:
            name = f"{claim.name}.png"
            fig.savefig(figures / name, format="png", dpi=80)
            lines += [f"![{claim.title}](results/{name})", ""]
        lines += [f"**Did it hold?** {claim.verdict(table)}", ""]
    out = docs / "results.md"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out)
    return out


def results(names: str | None, root: Path, docs: Path, run: bool = True, extra: Sequence[str] = ()) -> Path:
    """`make results`: each chosen claim's sweep run (or continued), then the page written."""
    claims = chosen(names)
    failed = []
    if run:
        for claim in claims:
            started = time.monotonic()
            if run_claim(claim, root, extra) != 0:
                failed.append(claim.name)
            print(f"claim {claim.name}: {_duration(time.monotonic() - started)}", file=sys.stderr, flush=True)
    out = write_results(claims, root, docs)
    if failed:
        print(f"claims with failed jobs (their rows say so): {', '.join(failed)}", file=sys.stderr)
    return out

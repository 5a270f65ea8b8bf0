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
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightsuite.reporting.claim_figures import (
    PAPER_TABLE6,
    TRIVIAL_ADDING_MSE,
    bars_figure,
    bpc_figure,
    degradation_figure,
    depth_figure,
    gan_figure,
    long_lag_figure,
)
from lightsuite.reporting.claim_runs import char_samples, gan_samples, lesion_metric, lesions
from lightsuite.reporting.runs import Job
from lightsuite.reporting.tables import SEED, Setting
from lightsuite.vocabulary import VOCAB_SIZE


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
    extra: Callable[[list[Job]], list[str]] | None = None  # more of the section (markdown lines)
    prepare: Callable[[list[Job]], None] | None = None  # work on finished jobs the table reads (a lesion)

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
    shown = ", ".join(f"{m.upper()} {v:.3f}" if v >= 0.01 else f"{m.upper()} {v:.1e}" for m, v in rows)
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
    uniform = math.log2(VOCAB_SIZE)
    return f"Test bits per character: {bpc:.3f} (uniform over {VOCAB_SIZE} characters: {uniform:.1f})."


def _ensemble_verdict(table: dict[str, dict[str, float]]) -> str:
    res = _mean(table, "model=resnet20", "mean drop")
    plain = _mean(table, "model=plain20", "mean drop")
    if math.isnan(res) or math.isnan(plain):
        return "Not all settings have been lesioned yet."
    held = "held" if res < 0.5 * plain else "did not hold"
    return (
        f"Removing one block cost ResNet-20 {res:.3f} of test accuracy on average, plain-20 {plain:.3f}. "
        f"The claim {held} at this scale."
    )


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
            figure=degradation_figure,
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
            figure=depth_figure,
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
            figure=long_lag_figure,
            verdict=_long_lag_verdict,
            published={"model=lstm, data.seq_len=100": "LSTM solves T = 100 (Hochreiter & Schmidhuber 1997)"},
            scale="5,000 steps (25 epochs of 200), hidden 64, lr 3e-3, 3 seeds",
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
            figure=gan_figure,
            verdict=_gan_verdict,
            prepare=gan_samples,
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
            figure=bars_figure(
                "Test MASE (below 1: better than the naive forecast)", "MASE", 0, 2, "best classical baseline"
            ),
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
            figure=bpc_figure,
            verdict=_char_verdict,
            extra=char_samples,
            scale="5 epochs on the standard library's sources",
        ),
        Claim(
            name="ensembles",
            title="Residual networks as ensembles",
            statement=(
                "A residual network behaves like an ensemble of shallow paths: deleting one block at "
                "test time barely hurts it, while the same deletion breaks a plain network "
                "(Veit et al. 2016, Fig. 3)."
            ),
            sweep="resnets",
            params={"model": ["plain20", "resnet20"], "seed": ["1", "2", "3"]},
            columns=(
                Column("mean drop", lesion_metric("lesion/mean_drop")),
                Column("max drop", lesion_metric("lesion/max_drop")),
                Column("intact accuracy", lesion_metric("lesion/acc_intact")),
            ),
            figure=bars_figure("Test accuracy lost when one block is deleted (mean over blocks)", "drop", 0),
            verdict=_ensemble_verdict,
            prepare=lesions,
            scale="the 20-layer nets of the degradation claim; one block deleted at a time",
        ),
    )
}

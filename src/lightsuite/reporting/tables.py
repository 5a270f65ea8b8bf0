"""The tables of a report: one row per job, one row per setting (mean over seeds), the best job.

A *setting* is a job's values of the swept keys other than `seed`: jobs that differ only in their
seed repeat one setting, and their final metrics are averaged.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from lightsuite.reporting.runs import DONE, PRUNED, Job

SEED = "seed"

# direction of a metric nobody configured, by the last word of its name: higher is better for
# scores, lower for losses and distances; anything else has no best job rather than a guessed one
_MAXIMIZE = {
    "acc",
    "accuracy",
    "f1",
    "auroc",
    "auc",
    "precision",
    "recall",
    "iou",
    "dice",
    "bleu",
    "r2",
    "is",
}
_MINIMIZE = {"loss", "err", "error", "fid", "kid", "mse", "mae", "rmse", "mase", "smape", "nll", "ppl", "bpc"}


@dataclass
class Setting:
    """The jobs that share every swept value except the seed."""

    values: dict[str, str]
    jobs: list[Job]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "all jobs"

    def finals(self, metric: str) -> list[float]:
        """Final values of `metric` over the finished jobs of this setting."""
        values = (job.metric(metric) for job in self.jobs if job.status == DONE)
        return [v for v in values if v is not None and math.isfinite(v)]


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value differs between jobs (every override of a single job)."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.value(k) for job in jobs}) > 1]


def settings(jobs: Sequence[Job], keys: Sequence[str]) -> list[Setting]:
    """Jobs grouped by their swept values other than the seed, in order of first appearance."""
    groups: dict[tuple, Setting] = {}
    for job in jobs:
        values = {k: job.value(k) or "—" for k in keys if k != SEED}
        groups.setdefault(tuple(values.values()), Setting(values, [])).jobs.append(job)
    return list(groups.values())


def direction(job: Job, metric: str) -> str | None:
    """`"max"` or `"min"` for `metric`, from the run's config where it says, else from the metric's name.

    In order: `optimized_mode: max|min` in the config; the Optuna sweeper's `direction`; the mode of
    a checkpoint or early-stopping callback that monitors this metric (or, for `x_best`, `x`);
    then the name rule above (`val/acc` max, `val/fid` min, ...).
    """
    mode = str(job.config.get("optimized_mode") or "").lower()
    if mode in ("max", "min"):
        return mode
    sweeper_dir = job.sweeper.get("direction")
    if isinstance(sweeper_dir, str) and sweeper_dir in ("maximize", "minimize"):
        return sweeper_dir[:3]
    base = re.sub(r"_best$", "", metric)
    for callback in (job.config.get("callbacks") or {}).values():
        monitors = isinstance(callback, dict) and callback.get("monitor") in (metric, base)
        if monitors and callback.get("mode") in ("max", "min"):
            return callback["mode"]
    words = set(re.split(r"[_\-]", base.rsplit("/", 1)[-1].lower()))
    if words & _MINIMIZE:
        return "min"
    if words & _MAXIMIZE:
        return "max"
    return None


def best_job(jobs: Sequence[Job], metric: str | None) -> tuple[Job | None, str | None]:
    """The finished job with the best final `metric`, and the direction used (a pruned job never is)."""
    if not metric:
        return None, None
    candidates = [j for j in jobs if j.status == DONE and _finite(j.metric(metric))]
    if not candidates:
        return None, None
    mode = direction(candidates[0], metric)
    if mode is None:
        return None, None
    pick = max if mode == "max" else min
    return pick(candidates, key=lambda j: j.metric(metric)), mode


def tied_with(jobs: Sequence[Job], best: Job | None, metric: str | None) -> list[Job]:
    """Every finished job whose final `metric` equals the best job's (the best alone when none ties).

    Equal as written in `metrics.json`: accuracies on a small split tie exactly, and a tie is a tie
    whatever order the jobs ran in, so each of them is starred.
    """
    if best is None or not metric:
        return []
    value = best.metric(metric)
    return [j for j in jobs if j is best or (j.status == DONE and j.metric(metric) == value)]


def label(metric: str) -> str:
    """A metric as a table header: an epoch mean says so (`train/loss_epoch` -> `train/loss (epoch mean)`)."""
    return f"{metric.removesuffix('_epoch')} (epoch mean)" if metric.endswith("_epoch") else metric


def job_table(
    jobs: Sequence[Job], keys: Sequence[str], metrics: Sequence[str], best: Collection[Job] = ()
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the job table: name, swept values, status, epochs run, parameter count, wall
    time, final metrics, best mark (every job tied for best), the commit that ran (`abc1234 dirty` when
    it had uncommitted changes), error.

    The error column is there only when some job has an error to show.
    """
    errors = any(job.error for job in jobs)
    header = ["job", *keys, "status", "epochs", "params", "wall time", *map(label, metrics), "best"]
    header += ["commit", *(["error"] if errors else [])]
    rows = []
    for job in jobs:
        finals = [fmt(job.metric(m)) for m in metrics]
        mark = "★" if any(job is b for b in best) else ""
        error = [job.error or ""] if errors else []
        values = [short(job.value(k)) for k in keys]
        run = [_count(job.epochs), params_text(job.parameters), duration(job.wall_seconds)]
        rows.append([job.name, *values, job.status_text, *run, *finals, mark, commit_text(job), *error])
    return header, rows


def params_text(count: int | None) -> str:
    """A parameter count as people quote it: `272,474 (0.27 M)`; `—` when unknown."""
    if count is None:
        return "—"
    return f"{count:,} ({count / 1e6:.2g} M)" if count >= 100_000 else f"{count:,}"


def duration(seconds: float | None) -> str:
    """`45 s`, `12 min 5 s`, `3 h 02 min`; `—` when unknown."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def commit_text(job: Job) -> str:
    """The short commit of a job's code, `dirty` after it when uncommitted changes ran; `—` when unknown."""
    if job.commit is None:
        return "—"
    return job.commit[:7] + (" dirty" if job.dirty else "")


def short(text: str | None) -> str:
    """A swept value for a table: as written, but a long number (a sampler's 0.07965261308120507) to 4 digits.

    The CSV keeps every value whole.
    """
    if not text:
        return "—"
    try:
        value = float(text)
    except ValueError:
        return text
    return fmt(value) if len(text) > 8 and math.isfinite(value) else text


def setting_table(groups: Sequence[Setting], metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-setting table: mean ± standard deviation over finished seeds."""
    keys = list(groups[0].values) if groups else []
    header = [*keys, "jobs", "finished", *map(label, metrics)]
    rows = []
    for group in groups:
        done = sum(job.status == DONE for job in group.jobs)
        cells = [mean_std(group.finals(m)) for m in metrics]
        rows.append([*group.values.values(), str(len(group.jobs)), str(done), *cells])
    return header, rows


def mean_std(values: Sequence[float]) -> str:
    """`0.931 ± 0.008`: mean and sample standard deviation, both to the s.d.'s first significant digit
    (the digits after it are noise); a single value alone, an s.d. of 0 as `± 0`, `—` for none."""
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return fmt(mean)
    std = statistics.stdev(values)
    if std == 0 or not (math.isfinite(std) and math.isfinite(mean)):
        return f"{fmt(mean)} ± {fmt(std) if std else 0}"
    digits = _first_digit(std)
    rounded = round(std, digits)
    digits = _first_digit(rounded)  # 0.0096 rounds to 0.01: one decimal fewer
    places = max(digits, 0)
    return f"{round(mean, digits):.{places}f} ± {round(std, digits):.{places}f}"


def _first_digit(value: float) -> int:
    """The decimal place of a positive number's first significant digit: 2 for 0.07857, -1 for 12.3."""
    return -math.floor(math.log10(abs(value)))


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def slug(name: str) -> str:
    """A name as part of a file name: `val/acc` -> `val_acc`."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (pipes in cells escaped)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


def job_csv(jobs: Sequence[Job], keys: Sequence[str], best: Collection[Job] = ()) -> str:
    """Every job with every final metric it has, numbers at full precision (for plotting elsewhere).

    When a job was pruned, `pruned_after_epochs` says after how many epochs (empty for the others).
    `commit` is the full hash and `dirty` true or false (both empty for run dirs without provenance);
    `epochs`, `parameters` and `wall_seconds` empty where unknown; `best` is true for each tied job.
    """
    metrics = sorted(set().union(*(set(j.final) for j in jobs)) | _partial_metrics(jobs))
    pruned = any(job.status == PRUNED for job in jobs)
    out = io.StringIO()
    writer = csv.writer(out)
    pruned_column = ["pruned_after_epochs"] if pruned else []
    writer.writerow(
        [
            "job",
            "path",
            *keys,
            "status",
            *pruned_column,
            "epochs",
            "parameters",
            "wall_seconds",
            "best",
            "commit",
            "dirty",
            "error",
            *metrics,
        ]
    )
    for job in jobs:
        values = [job.metric(m) for m in metrics]
        epochs = [str(job.pruned_at + 1) if job.pruned_at is not None else ""] if pruned else []
        writer.writerow(
            [
                job.name,
                str(job.path),
                *[job.value(k) or "" for k in keys],
                job.status,
                *epochs,
                "" if job.epochs is None else str(job.epochs),
                "" if job.parameters is None else str(job.parameters),
                "" if job.wall_seconds is None else repr(job.wall_seconds),
                str(any(job is b for b in best)).lower(),
                job.commit or "",
                "" if job.dirty is None else str(job.dirty).lower(),
                job.error or "",
                *["" if v is None else repr(v) for v in values],
            ]
        )
    return out.getvalue()


def setting_csv(groups: Sequence[Setting], metrics: Sequence[str]) -> str:
    """Per-setting mean, sample standard deviation and count of each metric over finished jobs."""
    keys = list(groups[0].values) if groups else []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*keys, "jobs", *(f"{m} {s}" for m in metrics for s in ("mean", "std", "n"))])
    for group in groups:
        cells = []
        for m in metrics:
            values = group.finals(m)
            mean = repr(statistics.fmean(values)) if values else ""
            std = repr(statistics.stdev(values)) if len(values) > 1 else ""
            cells += [mean, std, str(len(values))]
        writer.writerow([*group.values.values(), len(group.jobs), *cells])
    return out.getvalue()


def _partial_metrics(jobs: Sequence[Job]) -> set[str]:
    return {m for j in jobs if j.status != DONE for m in j.history}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)

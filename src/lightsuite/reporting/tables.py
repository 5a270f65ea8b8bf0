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
from collections.abc import Sequence
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


def job_table(
    jobs: Sequence[Job], keys: Sequence[str], metrics: Sequence[str], best: Job | None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the job table: name, swept values, status, final metrics, best mark, the commit
    that ran (`abc1234 dirty` when it had uncommitted changes), error.

    The error column is there only when some job has an error to show.
    """
    errors = any(job.error for job in jobs)
    header = ["job", *keys, "status", *metrics, "best", "commit", *(["error"] if errors else [])]
    rows = []
    for job in jobs:
        finals = [fmt(job.metric(m)) for m in metrics]
        mark = "★" if job is best else ""
        error = [job.error or ""] if errors else []
        values = [short(job.value(k)) for k in keys]
        rows.append([job.name, *values, job.status_text, *finals, mark, commit_text(job), *error])
    return header, rows


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
    header = [*keys, "jobs", "finished", *metrics]
    rows = []
    for group in groups:
        done = sum(job.status == DONE for job in group.jobs)
        cells = [mean_std(group.finals(m)) for m in metrics]
        rows.append([*group.values.values(), str(len(group.jobs)), str(done), *cells])
    return header, rows


def mean_std(values: Sequence[float]) -> str:
    """`0.9123 ± 0.0040` (sample standard deviation), a single value alone, `—` for none."""
    if not values:
        return "—"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values))}"


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


def job_csv(jobs: Sequence[Job], keys: Sequence[str], best: Job | None) -> str:
    """Every job with every final metric it has, numbers at full precision (for plotting elsewhere).

    When a job was pruned, `pruned_after_epochs` says after how many epochs (empty for the others).
    `commit` is the full hash and `dirty` true or false (both empty for run dirs without provenance).
    """
    metrics = sorted(set().union(*(set(j.final) for j in jobs)) | _partial_metrics(jobs))
    pruned = any(job.status == PRUNED for job in jobs)
    out = io.StringIO()
    writer = csv.writer(out)
    pruned_column = ["pruned_after_epochs"] if pruned else []
    writer.writerow(
        ["job", "path", *keys, "status", *pruned_column, "best", "commit", "dirty", "error", *metrics]
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
                str(job is best).lower(),
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

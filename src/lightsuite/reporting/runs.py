"""Reading finished, failed and unfinished runs back from disk, for `lightsuite-report`.

A run dir is what one `lightsuite-train` job leaves: `.hydra/` (config and overrides, written
before the job starts), `config.yaml` (resolved), `csv/metrics.csv` (the CSV logger's history),
`history.jsonl` (every epoch's logged values, kept whatever the loggers: `run/history.py`),
`run.json` (the task, its report metrics, its parameter count and the provenance: commit, command,
host, start and end of each process that ran in it), `metrics.json`
(only when the job finished, or was pruned by an Optuna search: then it holds the
fit's metrics so far), `<job name>.log` (Hydra's log file, which holds the error of a failed job)
and, for a job of a multirun, `job_status.json` (the sweep's verdict: completed, failed, pruned).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lightsuite.errors import ConfigError

# written by each job of a multirun (launch/sweeps.py); read here so the report and the summary agree
from lightsuite.io import RUN_FILE, STATUS_FILE
from lightsuite.reporting.curves import HISTORY_FILE, Point, read_epoch_history, read_history

REPORT_DIR = "report"
DONE, FAILED, UNFINISHED = "done", "failed", "unfinished"
# stopped early by an Optuna search's pruner: its metrics are those of an unfinished fit, never the best
PRUNED = "pruned"
# a Hydra log record starts with its timestamp: `[2026-11-27 15:30:00,123][name][LEVEL] - message`
_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[[^\]]*\]\[(\w+)\] - ?(.*)$")


@dataclass
class Job:
    """One run dir read back: what it was asked to do, how far it got and what it logged."""

    path: Path
    name: str
    config: dict[str, Any]
    overrides: dict[str, str]
    choices: dict[str, str]
    sweeper: dict[str, Any]
    status: str
    error: str | None
    final: dict[str, float]
    history: dict[str, list[Point]] = field(default_factory=dict)
    # `run.json`: the task's class and its `report_metrics` (absent in run dirs older than it)
    run: dict[str, Any] = field(default_factory=dict)
    # a pruned job: the epoch its pruner stopped it after, counted from 0 like Lightning (None: unknown)
    pruned_at: int | None = None

    @property
    def status_text(self) -> str:
        """The status as the tables show it: `pruned after 3 epochs` for a pruned job, else the status."""
        if self.status == PRUNED and self.pruned_at is not None:
            epochs = self.pruned_at + 1
            return f"{PRUNED} after {epochs} epoch{'s' if epochs != 1 else ''}"
        return self.status

    def value(self, key: str) -> str | None:
        """This job's value of an override key: its own override, else its config or group choice."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return None if isinstance(node, (dict, list)) else as_override(node)

    def metric(self, name: str) -> float | None:
        """The final value of `name`: from `metrics.json`, or the last one logged by an unfinished job."""
        if name in self.final:
            return self.final[name]
        points = self.history.get(name)
        return points[-1].value if points and self.status != DONE else None

    @property
    def commit(self) -> str | None:
        """The git commit of the code that ran (`run.json`'s provenance); None for older run dirs, no git."""
        git = self._provenance.get("git")
        commit = git.get("commit") if isinstance(git, dict) else None
        return commit if isinstance(commit, str) else None

    @property
    def dirty(self) -> bool | None:
        """Whether that code had uncommitted changes (kept in the run dir's `git.diff`); None when unknown."""
        git = self._provenance.get("git")
        dirty = git.get("dirty") if isinstance(git, dict) else None
        return dirty if isinstance(dirty, bool) else None

    @property
    def _provenance(self) -> dict[str, Any]:
        found = self.run.get("provenance")
        return found if isinstance(found, dict) else {}

    @property
    def metric_names(self) -> set[str]:
        return set(self.final) | set(self.history)

    @property
    def epochs(self) -> int | None:
        """Epochs run: the last epoch any logged value belongs to, counted from 1 (None: nothing logged)."""
        found = [p.epoch for points in self.history.values() for p in points if p.epoch is not None]
        return max(found) + 1 if found else None

    @property
    def parameters(self) -> int | None:
        """The task's parameter count from `run.json` (None for run dirs older than it)."""
        count = self.run.get("parameters")
        return count if _is_number(count) and not isinstance(count, float) else None

    @property
    def wall_seconds(self) -> float | None:
        """Wall time from `run.json`'s start and end: summed over the processes that ran in the dir
        (a resume, a requeue), those that never ended left out; None when no process ended."""
        segments = self._provenance.get("segments")
        spans = segments if isinstance(segments, list) and segments else [self._provenance]
        total, any_ended = 0.0, False
        for span in spans:
            seconds = _span(span) if isinstance(span, dict) else None
            if seconds is not None:
                total, any_ended = total + seconds, True
        return total if any_ended else None


def find_jobs(dirs: Iterable[str | os.PathLike]) -> list[Job]:
    """Every run under each of `dirs` (a sweep dir, a parent of sweeps, or a run dir itself).

    A job is named by its path under the DIR given (`0`, `1`, ...), prefixed with that DIR's name
    when several are given, so jobs of two sweeps never share a name.
    """
    roots = [Path(d).expanduser() for d in dirs]
    jobs: list[Job] = []
    seen: set[Path] = set()
    for given, root in zip(dirs, roots, strict=True):
        if not root.is_dir():
            raise ConfigError(
                f"{given} is not a directory: pass a multirun dir or run dirs (outputs/multirun/...)"
            )
        found = _run_dirs(root)
        if not found:
            raise ConfigError(
                f"no runs in {given}: a run dir holds .hydra/ or config.yaml "
                "(pass a multirun dir such as outputs/multirun/<date>/<time>)"
            )
        for path in found:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = path.name if path == root else str(path.relative_to(root))
            if len(roots) > 1 and path != root:
                name = f"{root.resolve().name}/{name}"
            jobs.append(load_job(path, name))
    return jobs


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (
        (path / "config.yaml").is_file() and ((path / "metrics.json").is_file() or (path / "csv").is_dir())
    )


def _run_dirs(root: Path) -> list[Path]:
    """Run dirs under `root`, in a stable (natural) order; never looks inside a run or a report."""
    if is_run_dir(root):
        return [root]
    found = []
    for here, subdirs, _ in os.walk(root):
        here_path = Path(here)
        keep = []
        for sub in subdirs:
            path = here_path / sub
            if sub == REPORT_DIR or sub.startswith("."):
                continue
            if is_run_dir(path):
                found.append(path)
            else:
                keep.append(sub)
        subdirs[:] = keep
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])


def load_job(path: Path, name: str) -> Job:
    """Read one run dir; anything missing (a job that never started training) is left empty."""
    hydra_dir = path / ".hydra"
    config = _read_yaml(path / "config.yaml") or _read_yaml(hydra_dir / "config.yaml") or {}
    overrides = parse_overrides(_read_yaml(hydra_dir / "overrides.yaml") or [])
    hydra_cfg = (_read_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra", {})
    choices = {k: as_override(v) for k, v in (hydra_cfg.get("runtime", {}).get("choices") or {}).items()}
    history = read_history(path / "csv" / "metrics.csv")
    # whatever the loggers, the run dir's own record of each epoch: what the CSV lacks comes from it
    for key, points in read_epoch_history(path / HISTORY_FILE).items():
        history.setdefault(key, points)
    final = _read_final(path)
    if final is not None and not from_this_run(final, history):
        final = None
    error = last_error(path)
    status = DONE if final is not None else FAILED if error else UNFINISHED
    record = read_json(path / STATUS_FILE)
    failure = sweep_failure(record, final, config.get("optimized_metric"))
    pruned_at = None
    if status == DONE and failure is not None:
        status, error = FAILED, failure
    elif status == DONE and pruned_by_sweep(record, final, config.get("optimized_metric")):
        status, pruned_at = PRUNED, _epoch(record.get("pruned_at_epoch"))
    return Job(
        path=path,
        name=name,
        config=config,
        overrides=overrides,
        choices=choices,
        sweeper=hydra_cfg.get("sweeper") or {},
        status=status,
        error=error if status != DONE else None,
        final=final or {},
        history=history,
        run=read_json(path / RUN_FILE) or {},
        pruned_at=pruned_at,
    )


def sweep_failure(record: Any, final: dict[str, float] | None, objective: str | None) -> str | None:
    """Why the sweep failed a job that finished (its objective NaN, infinite or not logged), else None.

    A job can write `metrics.json` and still fail its sweep; `job_status.json` says so. The record
    counts only if it belongs to this `metrics.json`: it holds the same objective (none, for a
    non-finite or missing one), so a later run into the same dir is not failed by an old record.
    """
    if not _verdict_of(record, "failed", final, objective):
        return None
    return str(record.get("error") or "failed")


def pruned_by_sweep(record: Any, final: dict[str, float] | None, objective: str | None) -> bool:
    """Whether an Optuna search pruned the job that wrote this `metrics.json` (the fit's metrics so far).

    The same check of ownership as `sweep_failure`: a record left by an earlier pruned run into the
    dir does not make a later finished run pruned.
    """
    return _verdict_of(record, "pruned", final, objective)


def _verdict_of(record: Any, status: str, final: dict[str, float] | None, objective: str | None) -> bool:
    """The record says `status` and holds the objective of this `metrics.json` (none for a non-finite one)."""
    if not isinstance(record, dict) or record.get("status") != status or final is None:
        return False
    recorded, written = record.get("objective"), final.get(objective) if objective else None
    if written is not None and not math.isfinite(written):
        written = None
    same = recorded is None if written is None else _is_number(recorded) and math.isclose(recorded, written)
    return same


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """`["model=plain20", "+x=1", "~y"]` as `{"model": "plain20", "x": "1"}` (deletions dropped)."""
    out = {}
    for line in lines:
        key, sep, value = str(line).partition("=")
        if not sep or key.startswith("~"):
            continue
        out[key.lstrip("+").split("@")[0]] = value
    return out


def _read_final(path: Path) -> dict[str, float] | None:
    """`metrics.json` as floats (null, written for a non-finite value, as NaN); None if absent or bad."""
    file = path / "metrics.json"
    try:
        data = json.loads(file.read_text()) if file.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: float(v) if v is not None else math.nan for k, v in data.items() if _is_number(v) or v is None}


def from_this_run(final: dict[str, float], history: dict[str, list[Point]]) -> bool:
    """Whether `metrics.json` was written by the run that logged `history`.

    A job re-run into the same dir rewrites the CSV log but leaves the earlier run's `metrics.json`
    until it finishes. A finished run's final values are the last ones it logged, so any metric in
    both that disagrees gives an earlier run away. Content, not file times: copies keep it.
    """
    for key, value in final.items():
        points = history.get(key)
        if points and math.isfinite(value) and not math.isclose(points[-1].value, value, rel_tol=1e-5):
            return False
    return True


def _span(record: dict[str, Any]) -> float | None:
    """Seconds from a record's `start` to its `end` (ISO 8601 times), None when either is missing."""
    try:
        start, end = datetime.fromisoformat(record["start"]), datetime.fromisoformat(record["end"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def last_error(path: Path) -> str | None:
    """The last line of the last error recorded in the run's log file(s), if any."""
    logs = sorted(path.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for log in reversed(logs):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        start = None
        for i, line in enumerate(lines):
            match = _RECORD.match(line)
            if (match and match.group(1) in ("ERROR", "CRITICAL")) or line.startswith("Traceback"):
                start = i
        if start is None:
            continue
        block = [lines[start]]
        for line in lines[start + 1 :]:
            if _RECORD.match(line):
                break
            block.append(line)
        text = [ln.strip() for ln in block if ln.strip()]
        last = text[-1]
        match = _RECORD.match(last)
        return match.group(2) if match else last
    return None


def read_json(file: Path) -> Any:
    """A JSON file's content; None when it is absent or unreadable (a writer may be replacing it)."""
    try:
        return json.loads(file.read_text()) if file.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(file: Path) -> Any:
    if not file.is_file():
        return None
    try:
        return yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return None


def as_override(value: Any) -> str:
    """A config value as it would be written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

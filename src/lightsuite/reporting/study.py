"""The Optuna study behind a sweep, read back from its storage: its trials, Optuna's history and importances.

An Optuna search names its study in `sweep_summary.json` (`"study": {"name": ..., "storage": ...}`);
the storage is a journal file (by default `<sweep dir>/optuna.journal`) or an RDB URL. It is only
read: a journal file that is not there is never created, a SQLite file is opened read-only. A
storage that is missing or cannot be read leaves a note, never an error: the runs' own tables and
figures stand without it. The figures are Optuna's own (`optuna.visualization.matplotlib`), so
they read the same as in Optuna's documentation and its dashboard.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightsuite.io import SUMMARY
from lightsuite.reporting.runs import Job, read_json
from lightsuite.reporting.tables import fmt, slug

# Optuna's trial states as the report names them (the job table says "failed", so does this one)
STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}
# below this many complete trials an importance is noise: fANOVA fits a forest to them
MIN_TRIALS_FOR_IMPORTANCE = 4
# fANOVA's forest is random: seeded, a re-run of the report draws the same importances
IMPORTANCE_SEED = 0
DPI = 100
_SQLITE = "sqlite:///"


@dataclass
class TrialRow:
    """One trial as the study holds it: its number (the job's), state, sampled values and objective(s)."""

    number: int
    state: str
    params: dict[str, Any]
    # a pruned trial's value is the last one it reported (Optuna's own rule); none for a failed one
    values: list[float] | None


@dataclass
class StudyReport:
    """A study read back: its trials, best trial, and the figures drawn from it."""

    name: str
    storage: str
    directions: list[str]
    objective: str | None
    trials: list[TrialRow]
    best: TrialRow | None
    # "" for the only study of a report, else `_<study name>`: the suffix of its files
    suffix: str = ""
    figures: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def params(self) -> list[str]:
        """Every parameter any trial sampled, in order of first appearance."""
        return list(dict.fromkeys(name for trial in self.trials for name in trial.params))

    def counts(self) -> dict[str, int]:
        """Trials per state: complete, pruned, failed, running, waiting (then any state Optuna adds)."""
        counts = {state: sum(t.state == state for t in self.trials) for state in STATES.values()}
        others = [t.state for t in self.trials if t.state not in counts]
        return {**counts, **{s: others.count(s) for s in others}}


def find_studies(
    dirs: Sequence[str | os.PathLike], jobs: Sequence[Job], notes: list[str]
) -> list[StudyReport]:
    """Each study named by the summary of a given DIR or of a sweep dir below one (the parent of a job).

    Notes say why a named study could not be read.
    """
    roots = [Path(d).expanduser() for d in dirs]
    below = [job.path.parent for job in jobs if _below(job.path.parent, roots)]
    named: dict[tuple[str, str], str | None] = {}
    for sweep_dir in dict.fromkeys([*roots, *below]):
        summary = read_json(sweep_dir / f"{SUMMARY}.json")
        study = summary.get("study") if isinstance(summary, dict) else None
        if not (isinstance(study, dict) and isinstance(study.get("name"), str)):
            continue
        if not isinstance(study.get("storage"), str):
            continue
        storage = storage_here(study["storage"], summary.get("sweep_dir"), sweep_dir)
        objective = summary.get("objective")
        named.setdefault((study["name"], storage), objective if isinstance(objective, str) else None)
    found = []
    for (name, storage), objective in named.items():
        suffix = "" if len(named) == 1 else f"_{slug(name)}"
        report = read_study(name, storage, objective, notes, suffix)
        if report is not None:
            found.append(report)
    return found


def storage_here(recorded: str, recorded_sweep_dir: Any, sweep_dir: Path) -> str:
    """The storage as recorded, or, for a journal file inside the recorded sweep dir, the same file
    inside the sweep dir as it is now: a copied or moved sweep reads its own copy of the study."""
    if "://" in recorded or not isinstance(recorded_sweep_dir, str):
        return recorded
    try:
        inside = Path(recorded).relative_to(recorded_sweep_dir)
    except ValueError:
        return recorded
    return str(sweep_dir / inside)


def read_study(
    name: str, storage: str, objective: str | None, notes: list[str], suffix: str = ""
) -> StudyReport | None:
    """The study `name` in `storage` with its figures; None (and a note saying why) when it cannot be read."""
    left_out = "its trials table and Optuna figures are left out"
    try:
        study = open_study(name, storage)
        trials = study.get_trials(deepcopy=False)
    except FileNotFoundError as exc:
        notes.append(f"Optuna study {name}: {exc}; {left_out}")
        return None
    except Exception as exc:  # whatever a damaged or foreign file, a bad URL or a lost server raises
        notes.append(f"Optuna study {name} in {storage} could not be read ({_reason(exc)}); {left_out}")
        return None
    rows = [
        TrialRow(t.number, STATES.get(t.state.name, t.state.name.lower()), dict(t.params), t.values)
        for t in trials
    ]
    directions = [d.name.lower() for d in study.directions]
    best = None
    if len(directions) == 1 and any(row.state == "complete" for row in rows):
        with contextlib.suppress(ValueError):  # no complete trial with a finite value
            best = next(row for row in rows if row.number == study.best_trial.number)
    report = StudyReport(name, storage, directions, objective, rows, best, suffix)
    report.figures = figures(study, report, notes)
    return report


def open_study(name: str, storage: str) -> Any:
    """The study `name`, opened from a journal file or an RDB URL without writing to either."""
    import optuna

    if "://" not in storage:
        path = Path(storage).expanduser()
        if not path.is_file():  # Optuna's journal backend would create it
            raise FileNotFoundError(f"its journal {storage} does not exist")
        from optuna.storages.journal import JournalFileBackend

        opened: Any = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    else:
        opened = optuna.storages.RDBStorage(
            _read_only(storage), skip_compatibility_check=True, skip_table_creation=True
        )
    held = optuna.get_all_study_names(storage=opened)
    if name not in held:
        raise LookupError(f"no study {name} there; it holds {', '.join(held) or 'none'}")
    return optuna.load_study(study_name=name, storage=opened)


def _read_only(url: str) -> str:
    """A SQLite URL as SQLite's read-only URI (a missing file is an error, not a new empty database)."""
    if not url.startswith(_SQLITE) or "?" in url:
        return url
    file = url[len(_SQLITE) :]
    if not Path(file).is_file():
        raise FileNotFoundError(f"its database {file} does not exist")
    return f"{_SQLITE}file:{file}?mode=ro&uri=true"


def importance_problem(trials: Sequence[Any]) -> str | None:
    """Why parameter importances cannot be told from these trials (Optuna `FrozenTrial`s), else None.

    fANOVA (Optuna's `FanovaImportanceEvaluator`) fits a forest to the complete trials with a finite
    value, over the parameters every complete trial sampled; it fails outright when neither the
    parameters nor the objective vary, and says nothing useful from a handful of trials.
    """
    from optuna.search_space import intersection_search_space
    from optuna.trial import TrialState

    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and len(t.values) == 1 and math.isfinite(t.values[0])
    ]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return f"{len(complete)} complete trial(s); parameter importances need {MIN_TRIALS_FOR_IMPORTANCE}"
    space = intersection_search_space(list(trials))
    varied = [
        name
        for name, distribution in space.items()
        if not distribution.single() and len({t.params[name] for t in complete if name in t.params}) > 1
    ]
    if not varied:
        return "no parameter sampled by every complete trial took two values; no parameter importances"
    if len({t.values[0] for t in complete}) < 2:
        return "every complete trial has the same objective; no parameter importances"
    return None


def figures(study: Any, report: StudyReport, notes: list[str]) -> dict[str, tuple[str, bytes]]:
    """Optuna's optimization history and, given enough complete trials, its parameter importances."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    where = f"Optuna study {report.name}"
    if len(report.directions) != 1:
        notes.append(f"{where} has {len(report.directions)} objectives: no history or importance figure")
        return {}
    if report.best is None:
        notes.append(f"{where}: no complete trial yet, no optimization history")
        return {}
    target = report.objective or "objective"
    out = {}
    try:
        with _optuna_figures():
            history = plot_optimization_history(study, target_name=target)
            out[f"optuna_history{report.suffix}.png"] = (
                f"{target} of each complete trial and the best so far ({report.name})",
                _png(history),
            )
            problem = importance_problem(study.get_trials(deepcopy=False))
            if problem is not None:
                notes.append(f"{where}: {problem}")
                return out
            evaluator = FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
            importances = plot_param_importances(study, evaluator=evaluator, target_name=target)
            out[f"optuna_importances{report.suffix}.png"] = (
                f"fANOVA importance of each parameter for {target} (complete trials; {report.name})",
                _png(importances),
            )
    except Exception as exc:  # a figure Optuna cannot draw from this study leaves the others
        notes.append(f"{where}: Optuna could not draw a figure ({_reason(exc)})")
    return out


@contextlib.contextmanager
def _optuna_figures() -> Iterator[None]:
    """Optuna's plots as drawn: its ggplot style undone afterwards, its experimental warning silenced."""
    import matplotlib as mpl
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings(), mpl.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def _png(ax: Any) -> bytes:
    """The figure of Optuna's axes as PNG bytes, its legend (drawn beside the axes) included; then closed.

    Optuna draws through pyplot, so the figure is also in pyplot's list until closed.
    """
    import matplotlib.pyplot as plt

    fig = ax.figure
    try:
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, bbox_inches="tight")
        return out.getvalue()
    finally:
        plt.close(fig)


def summary_line(report: StudyReport) -> str:
    """`Optuna study s: 12 trials (8 complete, 3 pruned, 1 failed); best val/acc_best 0.95 (trial 4, ...)`."""
    counts = ", ".join(f"{n} {state}" for state, n in report.counts().items() if n)
    line = f"Optuna study {report.name}: {len(report.trials)} trials ({counts or 'none'})"
    if report.best is not None and report.best.values:
        target = report.objective or "objective"
        line += (
            f"; best {target} = {fmt(report.best.values[0])} "
            f"(trial {report.best.number}, {report.directions[0]}d)"
        )
    return line


def trial_table(report: StudyReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the trials table: number, state, each parameter, objective, best mark."""
    params = report.params
    header = ["trial", "state", *params, report.objective or "objective", "best"]
    rows = []
    for trial in report.trials:
        values = ", ".join(fmt(v) for v in trial.values) if trial.values else "—"
        shown = [_cell(trial.params[p]) if p in trial.params else "—" for p in params]
        mark = "★" if trial is report.best else ""
        rows.append([str(trial.number), trial.state, *shown, values, mark])
    return header, rows


def trial_csv(report: StudyReport) -> str:
    """Every trial with its parameters and objective(s) at full precision."""
    params = report.params
    width = max([len(t.values) for t in report.trials if t.values] or [1])
    target = report.objective or "objective"
    objectives = [target] if width == 1 else [f"{target} {i}" for i in range(width)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "state", *params, *objectives, "best"])
    for trial in report.trials:
        values = list(trial.values or [])
        cells = [repr(v) for v in values] + [""] * (width - len(values))
        shown = [_raw(trial.params[p]) if p in trial.params else "" for p in params]
        writer.writerow([trial.number, trial.state, *shown, *cells, str(trial is report.best).lower()])
    return out.getvalue()


def _cell(value: Any) -> str:
    return fmt(value) if isinstance(value, float) else _raw(value)


def _raw(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _below(path: Path, roots: Sequence[Path]) -> bool:
    here = path.resolve()
    return any(here == root.resolve() or root.resolve() in here.parents for root in roots)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__

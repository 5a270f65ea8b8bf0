"""The report of an Optuna search: pruned jobs, the study's trials table and Optuna's figures of it.

Each sweep is a real study in a real journal file (Optuna's ask-and-tell), with the run dirs, status
files and summary the suite's writers leave for it (`sweep_files.optuna_sweep`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import sqlite3
import warnings
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState, create_trial
from PIL import Image
from rich.console import Console
from sweep_files import PlannedTrial, optuna_sweep

from lightsuite.io import SUMMARY
from lightsuite.launch.sweeps import write_summary
from lightsuite.report import report
from lightsuite.reporting.page import make_report, write_report
from lightsuite.reporting.runs import find_jobs
from lightsuite.reporting.study import MIN_TRIALS_FOR_IMPORTANCE, importance_problem
from lightsuite.reporting.tables import short

LR, WD = "task.optimizer.lr", "task.optimizer.weight_decay"
# the pruned trial had the highest val/acc_best when it was stopped: it must still never be the best
FEW = [
    PlannedTrial({LR: 0.1, WD: 1e-4}, "complete", [0.5, 0.7, 0.8]),
    PlannedTrial({LR: 0.01, WD: 1e-3}, "complete", [0.6, 0.82, 0.85]),
    PlannedTrial({LR: 0.3, WD: 1e-5}, "pruned", [0.9, 0.97]),
    PlannedTrial({LR: 0.001, WD: 1e-2}, "failed", [0.4]),
    PlannedTrial({LR: 0.05, WD: 3e-4}, "complete", [0.55, 0.75, 0.83]),
    PlannedTrial({LR: 0.02, WD: 1e-6}, "running", [0.5]),
]
# two more complete trials: five, enough for importances
ENOUGH = [
    *FEW,
    PlannedTrial({LR: 0.2, WD: 2e-5}, "complete", [0.3, 0.6, 0.7]),
    PlannedTrial({LR: 0.003, WD: 5e-3}, "complete", [0.5, 0.65, 0.78]),
]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def few(tmp_path: Path) -> Path:
    return optuna_sweep(tmp_path / "few", FEW)


@pytest.fixture
def enough(tmp_path: Path) -> Path:
    return optuna_sweep(tmp_path / "enough", ENOUGH)


def _rows(file: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(file.open()))


def _image(data: bytes) -> Image.Image:
    """A PNG that decodes whole (verify() reads every chunk), reopened to look at."""
    assert data.startswith(PNG)
    Image.open(io.BytesIO(data)).verify()
    return Image.open(io.BytesIO(data))


def test_a_pruned_job_shows_as_pruned_and_is_never_the_best(few):
    jobs = find_jobs([few])
    assert [j.status for j in jobs] == ["done", "done", "pruned", "failed", "done", "unfinished"]
    pruned = jobs[2]
    # pruned after its second epoch (Lightning counts from 0): what its curve shows
    assert (pruned.pruned_at, pruned.status_text, pruned.error) == (1, "pruned after 2 epochs", None)
    assert pruned.metric("val/acc_best") == 0.97 and pruned.metric("test/acc") is None

    out = write_report(made := make_report([str(few)]), few / "report")
    # 0.97 of the pruned job is the highest; the best finished job is 1 with 0.85
    assert made.best.name == "1" and made.mode == "max"
    rows = _rows(out / "jobs.csv")
    assert [r["status"] for r in rows] == ["done", "done", "pruned", "failed", "done", "unfinished"]
    assert [r["pruned_after_epochs"] for r in rows] == ["", "", "2", "", "", ""]
    assert [r["best"] for r in rows] == ["false", "true", "false", "false", "false", "false"]
    md = (out / "jobs.md").read_text().splitlines()
    assert "| pruned after 2 epochs |" in md[2 + 2] and "★" in md[2 + 1]
    page = (out / "index.html").read_text()
    assert "6 jobs: 3 done, 1 pruned, 1 failed, 1 unfinished" in page
    jobs_table = re.search(r"<table id=jobs>.*?</table>", page).group(0)
    classes = ["done", "best", "pruned", "failed", "done", "unfinished"]
    assert re.findall(r"<tr class='(\w*)'>", jobs_table) == classes


def test_a_pruned_record_of_an_earlier_run_does_not_prune_a_later_one(few):
    """A run into the same dir after a pruned one: its own metrics.json, and the old record stays."""
    job = few / "2"
    final = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**final, "val/acc_best": 0.99, "test/acc": 0.95}))
    # the CSV log agrees with the new metrics.json (val/acc_best is not in it, val/acc unchanged)
    jobs = find_jobs([few])
    assert jobs[2].status == "done" and jobs[2].pruned_at is None


def test_the_trials_table_holds_each_trials_state_values_and_objective(few):
    made = make_report([str(few)])
    assert len(made.studies) == 1
    found = made.studies[0]
    assert (found.name, found.storage) == ("search", str(few / "optuna.journal"))
    out = write_report(made, few / "report")
    rows = _rows(out / "trials.csv")
    assert list(rows[0]) == ["trial", "state", LR, WD, "val/acc_best", "best"]
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "failed", "complete", "running"]
    assert [float(r[LR]) for r in rows] == [t.params[LR] for t in FEW]
    assert [float(r[WD]) for r in rows] == [t.params[WD] for t in FEW]
    # a pruned trial's value is the last it reported (its best so far); failed and running have none
    assert [r["val/acc_best"] for r in rows] == ["0.8", "0.85", "0.97", "", "0.83", ""]
    assert [r["best"] for r in rows] == ["false", "true", "false", "false", "false", "false"]
    md = (out / "trials.md").read_text()
    assert (
        "| 2 | pruned | 0.3 | 1e-05 | 0.97 |  |" in md and "| 1 | complete | 0.01 | 0.001 | 0.85 | ★ |" in md
    )
    page = (out / "index.html").read_text()
    trials = re.search(r"<table id=trials>.*?</table>", page).group(0)
    classes = ["complete", "best", "pruned", "failed", "complete", "running"]
    assert re.findall(r"<tr class='(\w*)'>", trials) == classes
    summary = "Optuna study search: 6 trials (3 complete, 1 pruned, 1 failed, 1 running)"
    assert f"{summary}; best val/acc_best = 0.85 (trial 1, maximized)." in page


def test_history_always_and_importances_with_enough_complete_trials(few, enough):
    style = ("axes.facecolor", "axes.prop_cycle", "grid.color")
    before = [mpl.rcParams[key] for key in style]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        small = make_report([str(few)])
        large = make_report([str(enough)])
    assert not [w for w in seen if issubclass(w.category, ExperimentalWarning)]
    # Optuna's figures set pyplot's ggplot style and open pyplot figures: neither is left behind
    assert [mpl.rcParams[key] for key in style] == before and plt.get_fignums() == []

    assert list(small.studies[0].figures) == ["optuna_history.png"]
    assert any("3 complete trial(s); parameter importances need 4" in n for n in small.notes)
    assert list(large.studies[0].figures) == ["optuna_history.png", "optuna_importances.png"]
    for name, (_, data) in large.studies[0].figures.items():
        image = _image(data)
        assert image.width > 300 and image.height > 200, name
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 20, name  # drawn, not blank

    out = write_report(large, enough / "report")
    page = (out / "index.html").read_text()
    shown = {base64.b64decode(i) for i in re.findall(r'src="data:image/png;base64,([^"]+)"', page)}
    assert {(out / n).read_bytes() for n in ("optuna_history.png", "optuna_importances.png")} <= shown
    # seeded fANOVA: the same importances, to the byte, on a re-run
    again = make_report([str(enough)]).studies[0].figures["optuna_importances.png"][1]
    assert again == (out / "optuna_importances.png").read_bytes()
    # a re-run replaces a report holding the study's files (they are known as a report's own)
    write_report(small, enough / "report")
    assert not (enough / "report" / "optuna_importances.png").exists()


def test_terminal_output_names_the_study(few):
    shown = Console(file=io.StringIO(), width=200)
    report([str(few)], shown)
    text = shown.file.getvalue()
    line = (
        "Optuna study search: 6 trials (3 complete, 1 pruned, 1 failed, 1 running); best val/acc_best = 0.85"
    )
    assert line in text and str(few / "optuna.journal") in text
    assert "pruned after 2 epochs" in text


def test_a_missing_or_unreadable_storage_is_a_note(few, capsys):
    journal = few / "optuna.journal"
    saved = journal.read_bytes()
    journal.unlink()
    shown = Console(file=io.StringIO(), width=200)
    out = report([str(few)], shown)
    assert not journal.exists()  # never created by reading
    assert f"Optuna study search: its journal {journal} does not exist" in shown.file.getvalue()
    assert not list(out.glob("trials*")) and not list(out.glob("optuna_*"))
    assert "does not exist" in (out / "index.html").read_text()
    assert [r["status"] for r in _rows(out / "jobs.csv")][2] == "pruned"  # the rest of the report stands

    journal.write_bytes(b"not a journal\n" + saved[:40])
    made = make_report([str(few)])
    assert made.studies == [] and any(f"in {journal} could not be read (" in n for n in made.notes)

    journal.write_bytes(saved)
    summary = json.loads((few / f"{SUMMARY}.json").read_text())
    write_summary(few, "val/acc_best", "maximize", study={**summary["study"], "name": "other"})
    made = make_report([str(few)])
    assert made.studies == [] and any("no study other there; it holds search" in n for n in made.notes)


def test_the_study_is_only_read(few):
    journal = few / "optuna.journal"
    before = journal.read_bytes()
    names = sorted(p.name for p in few.iterdir())
    write_report(make_report([str(few)]), few / "report")
    assert journal.read_bytes() == before
    assert sorted(p.name for p in few.iterdir()) == sorted([*names, "report"])  # no lock file left


def test_a_study_in_sqlite(few, tmp_path):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(few / "optuna.journal"))
    )
    optuna.copy_study(from_study_name="search", from_storage=journal, to_storage=url)
    (few / "optuna.journal").unlink()
    write_summary(few, "val/acc_best", "maximize", study={"name": "search", "storage": url})
    before = db.read_bytes()
    made = make_report([str(few)])
    states = ["complete", "complete", "pruned", "failed", "complete", "running"]
    assert [t.state for t in made.studies[0].trials] == states
    assert made.studies[0].best.number == 1 and db.read_bytes() == before
    # a database without Optuna's migration stamp: opened for writing, Optuna would stamp it
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE alembic_version")
    connection.close()
    before = db.read_bytes()
    made = make_report([str(few)])
    assert db.read_bytes() == before and any("could not be read" in n for n in made.notes)
    db.unlink()
    made = make_report([str(few)])
    assert made.studies == [] and any(f"its database {db} does not exist" in n for n in made.notes)
    assert not db.exists()


def test_a_copied_sweep_reads_its_own_journal(few, tmp_path):
    copy = tmp_path / "elsewhere" / "sweep"
    shutil.copytree(few, copy)
    shutil.rmtree(few)
    made = make_report([str(copy)])
    assert made.studies[0].storage == str(copy / "optuna.journal")
    assert len(made.studies[0].trials) == len(FEW)


def test_a_parent_of_sweeps_shows_each_study(tmp_path):
    first = optuna_sweep(tmp_path / "a", FEW[:2], name="first")
    second = optuna_sweep(tmp_path / "b", FEW[:3], name="second")
    made = make_report([str(tmp_path)])
    assert [(s.name, s.suffix, len(s.trials)) for s in made.studies] == [
        ("first", "_first", 2),
        ("second", "_second", 3),
    ]
    out = write_report(made, tmp_path / "report")
    assert {"trials_first.csv", "trials_second.csv", "optuna_history_first.png"} <= {
        p.name for p in out.iterdir()
    }
    # a single run dir is no sweep: its sweep's study is not shown
    assert make_report([str(first / "0")]).studies == []
    assert second.exists()


def _study(values: list[float], lrs: list[float]) -> optuna.Study:
    """An in-memory study of complete trials with these objective values and learning rates."""
    study = optuna.create_study(direction="maximize")
    for value, lr in zip(values, lrs, strict=True):
        study.add_trial(
            create_trial(params={"lr": lr}, distributions={"lr": FloatDistribution(1e-4, 1.0)}, value=value)
        )
    return study


def test_importances_are_asked_for_only_where_fanova_can_tell():
    """The rule against Optuna's own evaluator: where it says no, fANOVA fails or has too little."""
    assert MIN_TRIALS_FOR_IMPORTANCE == 4
    varied = _study([0.1, 0.5, 0.3, 0.9], [0.01, 0.1, 0.05, 0.5])
    assert importance_problem(varied.trials) is None
    assert set(FanovaImportanceEvaluator(seed=0).evaluate(varied)) == {"lr"}

    assert "3 complete trial(s)" in importance_problem(varied.trials[:3])
    one_value = _study([0.1, 0.5, 0.3, 0.9], [0.1] * 4)
    flat = _study([0.5] * 4, [0.01, 0.1, 0.05, 0.5])
    assert "took two values" in importance_problem(one_value.trials)
    assert "same objective" in importance_problem(flat.trials)
    for study in (one_value, flat):
        with pytest.raises(RuntimeError, match="zero total variance"):
            FanovaImportanceEvaluator(seed=0).evaluate(study)

    # pruned and failed trials do not count towards the four
    mixed = _study([0.1, 0.5, 0.3], [0.01, 0.1, 0.05])
    lr = {"lr": FloatDistribution(1e-4, 1.0)}
    mixed.add_trial(create_trial(params={"lr": 0.2}, distributions=lr, state=TrialState.PRUNED))
    mixed.add_trial(create_trial(state=TrialState.FAIL))
    assert "3 complete trial(s)" in importance_problem(mixed.trials)


def test_a_samplers_long_values_are_shortened_in_the_tables_only(tmp_path):
    lr = 0.07965261308120507
    sweep = optuna_sweep(tmp_path, [PlannedTrial({LR: lr, WD: 1e-4}, "complete", [0.5])])
    out = write_report(make_report([str(sweep)]), sweep / "report")
    assert "| 0 | 0.07965 | 0.0001 | done |" in (out / "jobs.md").read_text()
    assert float(_rows(out / "jobs.csv")[0][LR]) == lr  # every digit kept
    assert float(_rows(out / "trials.csv")[0][LR]) == lr
    # values as written stay as written: a short number, a name, a missing one
    assert [short(v) for v in ("1e-3", "20", "resnet20", None)] == ["1e-3", "20", "resnet20", "—"]

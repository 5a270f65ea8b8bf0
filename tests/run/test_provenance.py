"""Provenance in `run.json`: the commit and diff of the code that ran (real git in tmp_path), git absent
outside a tree, one segment per process that ran in a run dir, and the commit in the report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lightsuite.run.files import save_run_end, save_run_file

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs a git binary")


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tree holding a package `pkg` (standing in for lightsuite's source), one commit."""
    root = tmp_path / "code"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("rate = 0.1\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


class Task:
    """Any object: `run.json` records its class and `report_metrics`."""

    report_metrics = ("val/acc",)


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_dirty_tree_leaves_its_diff_which_reproduces_the_change(repo, tmp_path):
    run = tmp_path / "run"
    save_run_file(Task(), run, package_dir=repo / "pkg", cwd=repo)
    clean = run_json(run)["provenance"]
    assert clean["git"]["commit"] == git(repo, "rev-parse", "HEAD") and clean["git"]["dirty"] is False
    assert not (run / "git.diff").exists()

    (repo / "pkg" / "__init__.py").write_text("rate = 0.5\n")
    (repo / "notes.txt").write_text("not committed\n")
    save_run_file(Task(), run, package_dir=repo / "pkg", cwd=repo)
    record = run_json(run)["provenance"]
    assert record["git"]["dirty"] is True and record["dirty"] is True
    assert record["git"]["untracked"] == ["notes.txt"] and record["git"]["diff"] == "git.diff"
    diff = (run / "git.diff").read_text()
    assert "# untracked: notes.txt" in diff
    # the diff applied to a clean checkout of the recorded commit is the code that ran
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", record["commit"])
    git(clone, "apply", str(run / "git.diff"))
    assert (clone / "pkg" / "__init__.py").read_text() == "rate = 0.5\n"


def test_outside_a_git_tree_git_is_recorded_as_absent(tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    save_run_file(Task(), tmp_path / "run", package_dir=plain, cwd=plain)
    record = run_json(tmp_path / "run")["provenance"]
    assert record["git"] is None and record["commit"] is None
    assert "not a git tree" in record["git_reason"] and "project_git" not in record
    assert record["command"]["argv"] and record["host"]
    # and with no git binary at all: a reason, no error
    monkeypatch.setenv("PATH", str(plain))
    save_run_file(Task(), tmp_path / "nogit", package_dir=plain, cwd=plain)
    assert run_json(tmp_path / "nogit")["provenance"]["git_reason"] == "no git binary on PATH"


def test_a_project_tree_other_than_the_code_is_recorded_too(repo, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "conf.yaml").write_text("lr: 1\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "a user's project")
    (project / "conf.yaml").write_text("lr: 2\n")  # a conf edited since: dirty
    save_run_file(Task(), tmp_path / "run", package_dir=repo / "pkg", cwd=project)
    record = run_json(tmp_path / "run")["provenance"]
    assert record["git"]["root"] == str(repo)
    assert record["project_git"]["root"] == str(project) and record["project_git"]["dirty"] is True
    assert "+lr: 2" in (tmp_path / "run" / "git-project.diff").read_text()
    assert record["git"]["dirty"] is False and not (tmp_path / "run" / "git.diff").exists()


def test_a_resumed_run_dir_keeps_every_segment_and_its_diff(repo, tmp_path, monkeypatch):
    run = tmp_path / "run"
    code = repo / "pkg" / "__init__.py"
    for number, rate in enumerate(("0.2", "0.3", "0.4"), start=1):
        monkeypatch.setenv("SLURM_JOB_ID", f"10{number}")
        code.write_text(f"rate = {rate}\n")  # edited between a kill and its requeue
        save_run_file(Task(), run, package_dir=repo / "pkg", cwd=repo)
        if number == 1:
            save_run_end(run)  # the first segment ended; the second is killed before its end
    save_run_end(run)
    record = run_json(run)["provenance"]
    segments = record["segments"]
    assert [s["slurm"]["job_id"] for s in segments] == ["101", "102", "103"]
    assert segments[0]["end"] is not None and segments[1]["end"] is None
    assert segments[2]["end"] == record["end"] and record["slurm"]["job_id"] == "103"
    assert [s["diffs"] for s in segments] == [["git.1.diff"], ["git.2.diff"], ["git.diff"]]
    for segment, rate in zip(segments, ("0.2", "0.3", "0.4"), strict=True):
        assert f"+rate = {rate}" in (run / segment["diffs"][0]).read_text()
    assert run_json(run)["task"].endswith("Task")


def test_the_report_shows_the_short_commit_and_a_dash_for_older_run_dirs(repo, tmp_path):
    from sweep_files import base_config, write_job

    from lightsuite.reporting.page import make_report, write_report

    sweep = tmp_path / "sweep"
    final = {"val/acc": 0.8, "val/acc_best": 0.8, "train/loss": 1.0}
    for i in range(3):
        write_job(sweep / str(i), [f"seed={i}"], base_config(0.1, i), [0.8], [1.0], final, run_file=None)
    save_run_file(Task(), sweep / "0", package_dir=repo / "pkg", cwd=repo)
    (repo / "pkg" / "__init__.py").write_text("rate = 0.9\n")
    save_run_file(Task(), sweep / "1", package_dir=repo / "pkg", cwd=repo)
    commit = git(repo, "rev-parse", "HEAD")
    out = write_report(make_report([str(sweep)]), sweep / "report")
    header, _, *rows = (out / "jobs.md").read_text().splitlines()
    column = [c.strip() for c in header.split("|")].index("commit")
    cells = [[c.strip() for c in row.split("|")][column] for row in rows]
    assert cells == [commit[:7], f"{commit[:7]} dirty", "—"]
    assert f"<td>{commit[:7]} dirty</td>" in (out / "index.html").read_text()

"""The report on a synthetic sweep: table rows, best job, mean over seeds, figures, the page."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from pytorch_lightning.loggers import CSVLogger
from sweep_files import base_config, synthetic_sweep, write_job

from lightsuite.reporting import plots, tables
from lightsuite.reporting.page import make_report, write_report
from lightsuite.reporting.runs import find_jobs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return synthetic_sweep(tmp_path)


def _rows(file: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(file.open()))


def test_jobs_are_read_with_status_overrides_and_error(sweep):
    jobs = find_jobs([sweep])
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    assert [j.status for j in jobs] == ["done", "done", "done", "failed"]
    assert jobs[3].error == "error: train/loss is nan at step 7: lower task.optimizer.lr"
    assert jobs[0].error is None
    # a failed job's final value is the last one it logged
    assert jobs[3].metric("val/acc") == 0.4
    assert jobs[2].metric("val/acc") is None
    assert tables.swept_keys(jobs) == ["task.optimizer.lr", "seed"]
    assert jobs[0].value("model") == "resnet20"


def test_a_crash_shows_the_last_line_of_its_traceback(tmp_path):
    """Not a user error: the traceback goes to the log, the report shows the exception line."""
    write_job(
        tmp_path / "0", ["seed=1"], base_config(0.1, 1), None, [1.0], None, error=ZeroDivisionError("oops")
    )
    job = find_jobs([tmp_path])[0]
    assert "Traceback" in (tmp_path / "0" / "train.log").read_text()
    assert (job.status, job.error) == ("failed", "ZeroDivisionError: oops")


def test_report_files_hold_the_expected_values(sweep):
    out = write_report(make_report([str(sweep)]), sweep / "report")
    assert out == sweep / "report"
    rows = _rows(out / "jobs.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["task.optimizer.lr"] for r in rows] == ["0.1", "0.1", "0.001", "0.01"]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    # best by optimized_metric (val/acc_best), maximized: seed 2 of lr=0.1
    assert [r["best"] for r in rows] == ["false", "true", "false", "false"]
    assert float(rows[1]["val/acc"]) == 0.9 and rows[2]["val/acc"] == ""
    assert "lower task.optimizer.lr" in rows[3]["error"]

    settings = _rows(out / "settings.csv")
    assert [s["task.optimizer.lr"] for s in settings] == ["0.1", "0.001", "0.01"]
    assert float(settings[0]["val/acc mean"]) == pytest.approx(0.85)
    assert float(settings[0]["val/acc std"]) == pytest.approx(statistics.stdev([0.8, 0.9]))
    assert settings[0]["val/acc n"] == "2" and settings[2]["val/acc n"] == "0"  # failed jobs not averaged

    md = (out / "jobs.md").read_text().splitlines()
    # the optimized metric, the plotted ones and their test/ twins where logged (no test/loss here)
    columns = ["job", "task.optimizer.lr", "seed", "status", "epochs", "params", "wall time"]
    columns += ["val/acc_best", "val/acc", "train/loss", "test/acc", "best", "commit", "error"]
    assert md[0] == "| " + " | ".join(columns) + " |"
    assert len(md) == 2 + 4 and "★" in md[3] and "failed" in md[5]
    # s.d. 0.0707 of 0.8 and 0.9: both to its first significant digit
    assert "0.85 ± 0.07" in (out / "settings.md").read_text()

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["curves_train_loss.png", "curves_val_acc.png", "hparam_task_optimizer_lr.png"]
    page = (out / "index.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    assert {base64.b64decode(i) for i in images} == {(out / p).read_bytes() for p in pngs}
    assert all((out / p).read_bytes().startswith(PNG) for p in pngs)
    assert "<table id=jobs>" in page and page.count("<tr class='") == 4 + 3
    assert "lower task.optimizer.lr" in page and "val/acc_best" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing fetched from a network


def test_curves_draw_the_mean_over_seeds_per_epoch(sweep):
    jobs = find_jobs([sweep])
    groups = tables.settings(jobs, tables.swept_keys(jobs))
    fig = plots.curves_figure(groups, "val/acc")
    ax = fig.axes[0]
    means = {line.get_gid(): line for line in ax.lines if line.get_gid()}
    assert list(means) == ["mean task.optimizer.lr=0.1"]
    line = means["mean task.optimizer.lr=0.1"]
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0]
    assert list(line.get_ydata()) == pytest.approx([0.55, 0.75, 0.85])
    assert ax.get_xlabel() == "epoch"
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.85 + statistics.stdev([0.8, 0.9]))
    # train/loss is logged several times an epoch: drawn over steps
    assert plots.curves_figure(groups, "train/loss").axes[0].get_xlabel() == "optimizer step"


def test_hyperparameter_axis_is_logarithmic_across_decades(sweep):
    jobs = find_jobs([sweep])
    keys = tables.swept_keys(jobs)
    assert plots.numeric_keys(jobs, keys) == ["task.optimizer.lr"]
    fig = plots.hparam_figure(jobs, "task.optimizer.lr", keys, ["val/acc", "train/loss"])
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    acc = next(line for line in fig.axes[0].lines if line.get_gid())
    # finished jobs only: lr=0.001 has no val/acc, lr=0.01 failed
    assert list(acc.get_xdata()) == [0.1] and list(acc.get_ydata()) == pytest.approx([0.85])
    loss = next(line for line in fig.axes[1].lines if line.get_gid())
    assert list(loss.get_xdata()) == [0.001, 0.1]


def test_linear_axis_within_a_decade(tmp_path):
    for i, depth in enumerate((20, 56)):
        cfg = base_config(0.1, 1)
        write_job(tmp_path / str(i), [f"model.depth={depth}"], cfg, [0.5], [1.0], {"val/acc": 0.5 + i / 10})
    jobs = find_jobs([tmp_path])
    fig = plots.hparam_figure(jobs, "model.depth", ["model.depth"], ["val/acc"])
    assert fig.axes[0].get_xscale() == "linear"


@pytest.mark.parametrize(
    ("metric", "config", "expected"),
    [
        ("val/acc_best", {}, "max"),
        ("val/loss", {}, "min"),
        ("val/fid", {}, "min"),
        ("test/acc_top5", {}, "max"),
        ("val/score", {}, None),
        ("val/score", {"optimized_mode": "min"}, "min"),
        ("val/score_best", {"callbacks": {"ckpt": {"monitor": "val/score", "mode": "max"}}}, "max"),
        ("val/acc", {"callbacks": {"ckpt": {"monitor": "val/acc", "mode": "min"}}}, "min"),
    ],
)
def test_direction_from_config_then_name(tmp_path, metric, config, expected):
    write_job(tmp_path / "0", ["seed=1"], config, None, [1.0], {"x": 1.0})
    assert tables.direction(find_jobs([tmp_path])[0], metric) == expected


def test_minimized_metric_marks_the_lowest_job(sweep):
    for job in ("0", "1", "2"):
        cfg = yaml.safe_load((sweep / job / "config.yaml").read_text())
        (sweep / job / "config.yaml").write_text(yaml.safe_dump({**cfg, "optimized_metric": "train/loss"}))
    report = make_report([str(sweep)], ["train/loss"])
    assert report.optimized == "train/loss" and report.mode == "min"
    assert report.best.name == "0"


def test_defaults_come_from_the_run_file(tmp_path):
    """A new family's task names its own metrics in each run's run.json; nothing in the report knows them."""
    cfg = {"task": {"_target_": "gan_task.GanTask"}, "optimized_metric": "val/fid"}
    job = write_job(
        tmp_path / "runs" / "0", ["seed=1"], cfg, [0.1], [1.0], {"val/fid": 30.0, "train/d_loss": 0.7}
    )
    (job / "run.json").write_text(
        json.dumps({"task": "gan_task.GanTask", "report_metrics": ["val/fid", "train/d_loss"]})
    )
    report = make_report([str(tmp_path / "runs")])
    assert report.metrics == ["val/fid", "train/d_loss"]
    assert report.mode == "min" and report.best is not None
    assert make_report([str(tmp_path / "runs")], ["val/acc"]).metrics == ["val/acc"]
    # the module named there is never imported: the report reads files only
    assert "gan_task" not in sys.modules


def test_run_dirs_older_than_the_run_file_fall_back_to_the_optimized_metric(tmp_path):
    cfg = {"task": {"_target_": "lightsuite.tasks.gan.GANTask"}, "optimized_metric": "val/fid"}
    write_job(tmp_path / "runs" / "0", ["seed=1"], cfg, [0.1], [1.0], {"val/fid": 30.0}, run_file=None)
    report = make_report([str(tmp_path / "runs")])
    assert report.metrics == ["val/fid"]
    assert any("no run.json" in note and "metrics=a,b" in note for note in report.notes)


def test_rerun_replaces_the_report_and_is_not_read_as_a_run(sweep):
    first = write_report(make_report([str(sweep)], ["train/loss"]), sweep / "report")
    assert (first / "curves_train_loss.png").exists()
    report = make_report([str(sweep)], ["val/acc"])
    assert len(report.jobs) == 4
    write_report(report, sweep / "report")
    # the earlier report's figures go with it
    assert not (sweep / "report" / "curves_train_loss.png").exists()
    assert (sweep / "report" / "curves_val_acc.png").exists()
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "2", "3", "report"]


def test_metrics_json_of_an_earlier_run_is_not_final(sweep):
    """A re-run into the same dir that did not finish must not show the earlier run's result."""
    job = sweep / "0"
    shutil.rmtree(job / "csv")
    rerun = CSVLogger(save_dir=job, name="csv", version="")
    rerun.log_metrics({"val/acc": 0.55, "epoch": 0}, step=4)
    rerun.save()
    jobs = find_jobs([sweep])
    assert jobs[0].status == "unfinished" and jobs[0].final == {}
    assert jobs[0].metric("val/acc") == 0.55


def test_copied_runs_stay_finished(sweep, tmp_path):
    """File times change when a sweep is copied; whether a job finished does not."""
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, copy_function=shutil.copy)
    for final in copy.glob("*/metrics.json"):
        os.utime(final, (1e9, 1e9))
    assert [j.status for j in find_jobs([copy])] == ["done", "done", "done", "failed"]


def test_a_single_run_dir_and_several_dirs(sweep):
    single = make_report([str(sweep / "1")])
    assert [j.name for j in single.jobs] == ["1"]
    assert single.keys == ["task.optimizer.lr", "seed"]  # one job: all of its overrides
    out = write_report(single, sweep / "1" / "report")
    assert len(_rows(out / "jobs.csv")) == 1 and not (out / "settings.csv").exists()
    assert (out / "jobs.md").read_text().splitlines()[0].endswith("| best | commit |")  # no error column
    both = make_report([str(sweep / "0"), str(sweep / "3")], ["val/acc"])
    assert [j.name for j in both.jobs] == ["0", "3"]


def _picture(path: Path, shade: int) -> bytes:
    """A small real PNG of one grey level, so that each job's pictures can be told apart on the page."""
    import numpy as np

    from lightsuite.io import save_png

    return save_png(np.full((4, 6, 3), shade, dtype=np.uint8), path).read_bytes()


def test_the_page_shows_each_jobs_test_pictures_best_job_first(sweep):
    from lightsuite.reporting.pictures import job_pictures

    assert job_pictures(find_jobs([sweep]), None, []) == []  # the synthetic sweep's runs drew none
    written = {
        ("0", "confusion_matrix.png"): _picture(sweep / "0" / "confusion_matrix.png", 10),
        ("0", "worst_test_images.png"): _picture(sweep / "0" / "worst_test_images.png", 20),
        ("1", "confusion_matrix.png"): _picture(sweep / "1" / "confusion_matrix.png", 30),
    }
    (sweep / "2" / "worst_test_images.png").write_bytes(b"half a file")  # not a PNG: not shown
    report = make_report([str(sweep)])
    assert [(p.job.name, [name for name, _, _ in p.pictures]) for p in report.pictures] == [
        ("1", ["confusion_matrix.png"]),  # the best job (val/acc_best 0.9) first
        ("0", ["confusion_matrix.png", "worst_test_images.png"]),
    ]
    page = (write_report(report, sweep / "report") / "index.html").read_text()
    section = page[page.index("<h2>Test pictures</h2>") :]
    blocks = re.findall(
        r"<details class=pictures( open)?><summary>job <b>(\w+)</b>(.*?)</details>", section, re.S
    )
    assert [(name, opened) for opened, name, _ in blocks] == [("1", " open"), ("0", "")]
    for _, name, block in blocks:
        shown = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', block)]
        assert shown == [data for (job, _), data in written.items() if job == name]
    assert "worst_test_images.png" in blocks[1][2] and "worst_test_images.png" not in blocks[0][2]

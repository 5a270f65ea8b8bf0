"""`history.jsonl`: a run without the CSV logger keeps every epoch's values, a resume rewinds them,
and the report draws its curves from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import FAST
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightsuite.reporting import tables
from lightsuite.reporting.page import make_report, write_report
from lightsuite.reporting.runs import find_jobs
from lightsuite.train import train

# validation every second epoch: a line holds what its own epoch logged, not values left from before
TINY = [
    *FAST,
    "logger=tensorboard",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.check_val_every_n_epoch=2",
    "+trainer.num_sanity_val_steps=0",
    "callbacks.early_stopping=null",
    "task.test_pictures=false",
    # a schedule a longer resume can continue (a cosine one has ended)
    "task/scheduler=constant",
]


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def _scalars(run: Path, tag: str) -> dict[int, float]:
    """What TensorBoard got for `tag`, by step: the record the history must agree with."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> Path:
    """Two epochs with TensorBoard as the only logger, then a resume of the same run dir to three."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from lightsuite import CONFIG_DIR

    root = tmp_path_factory.mktemp("history")
    run = root / "run"

    def cfg(epochs: int):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            made = compose("train", overrides=[*TINY, f"trainer.max_epochs={epochs}"])
        with open_dict(made):
            made.paths.output_dir = str(run)
            made.paths.log_dir = str(root / "outputs")
        GlobalHydra.instance().clear()
        return made

    train(cfg(2))
    first = _lines(run)
    assert [line["epoch"] for line in first] == [0, 1]
    # as if a kill came after epoch 2's line but before its checkpoint: the resume must drop it
    with (run / "history.jsonl").open("a") as fh:
        fh.write(json.dumps({"epoch": 2, "step": 8, "val/acc": 0.0}) + "\n")
    train(cfg(3))
    return run


def test_every_epoch_is_kept_without_the_csv_logger(resumed_run):
    run = resumed_run
    assert not (run / "csv").exists()
    lines = _lines(run)
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    # each line at the logger step of its epoch's values: three batches an epoch, counted from 0
    assert [line["step"] for line in lines] == [2, 5, 8]
    # validation ran in epoch 1 only; nothing per step (the last batch's loss, the learning rate)
    assert ["val/acc" in line for line in lines] == [False, True, False]
    assert not any("train/loss" in line or any(k.startswith("lr-") for k in line) for line in lines)
    # the same values TensorBoard was sent, the epochs before the resume included
    assert {line["step"]: line["train/loss_epoch"] for line in lines} == pytest.approx(
        _scalars(run, "train/loss_epoch")
    )
    assert lines[1]["val/acc"] == pytest.approx(_scalars(run, "val/acc")[5])


def test_the_report_draws_curves_from_the_history(resumed_run):
    report = make_report([str(resumed_run)])
    # train/loss is drawn as its epoch mean, over epochs, as is val/acc (one point)
    assert sorted(report.figures) == ["curves_train_loss.png", "curves_val_acc.png"]
    assert report.figures["curves_train_loss.png"][0] == "train/loss (epoch mean) during training"
    [job] = report.jobs
    assert [p.epoch for p in job.history["train/loss_epoch"]] == [0, 1, 2]
    assert "train/loss_epoch" in report.columns and "train/loss" not in report.columns
    assert job.epochs == 3
    final = json.loads((resumed_run / "metrics.json").read_text())
    assert job.metric("train/loss_epoch") == final["train/loss_epoch"]
    assert not [n for n in report.notes if "no training curves" in n]
    assert "train/loss (epoch mean)" in tables.setting_table(report.groups, report.columns)[0]
    assert "train/loss (epoch mean)" in tables.job_table(report.jobs, [], report.columns)[0]


def test_a_job_without_any_history_is_named_on_the_page(resumed_run, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(resumed_run, bare, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (bare / "history.jsonl").unlink()
    report = make_report([str(bare)])
    assert report.figures == {}
    assert [n for n in report.notes if n.startswith("no training curves for job(s) bare:")]
    page = (write_report(report, tmp_path / "out") / "index.html").read_text()
    assert re.search(r"<h2>Training curves</h2><p class=note id=no-curves>No job logged", page)


def test_run_file_holds_the_parameter_count_a_dry_run_prints(resumed_run, make_cfg, capsys):
    capsys.readouterr()
    train(make_cfg("train", [*TINY, "dry_run=true"]))
    printed = re.search(r"around \w+, ([\d,]+) parameters", capsys.readouterr().out)
    assert printed, "the dry run printed no parameter count"
    recorded = json.loads((resumed_run / "run.json").read_text())["parameters"]
    assert recorded == int(printed.group(1).replace(",", ""))
    assert find_jobs([resumed_run])[0].parameters == recorded

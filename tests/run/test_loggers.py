"""Every logger choice writes a run that can be read back from disk, and W&B is closed after it."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest
import wandb
import yaml
from conftest import FAST, ONE_TINY_EPOCH, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from wandb_records import read_records

from lightsuite.train import train

SHORT = [*FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.log_every_n_steps=1"]


@pytest.fixture
def clean_wandb_env(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_many_loggers_write_readable_runs(make_cfg, tmp_path, clean_wandb_env):
    metrics = train(make_cfg("train", [*SHORT, "logger=many", "tags=[ci,many]"]))
    run = tmp_path / "run"

    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert any(r.get("val/acc") for r in rows)

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"val/acc", "train/loss", "test/acc"} <= set(events.Tags()["scalars"])

    (wandb_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_records(wandb_file)
    kinds = {r.WhichOneof("record_type") for r in records}
    assert {"run", "history", "config"} <= kinds
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.project == "lightsuite" and list(run_record.tags) == ["ci", "many"]
    history = [
        {(item.key or "/".join(item.nested_key)): item.value_json for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert {"val/acc", "train/loss", "test/acc"} <= {key for h in history for key in h}
    test_acc = [json.loads(h["test/acc"]) for h in history if "test/acc" in h]
    assert test_acc == [pytest.approx(metrics["test/acc"])]
    config_keys = {
        item.key if item.key else item.nested_key[0]
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert {"model", "data", "trainer"} <= config_keys

    # the job closed its run and gave the process its W&B mode back
    assert wandb.run is None
    assert "WANDB_MODE" not in os.environ


def test_wandb_runs_of_two_jobs_stay_apart(make_cfg, tmp_path, clean_wandb_env):
    train(make_cfg("train", [*SHORT, "logger=wandb"], run_dir=tmp_path / "a"))
    train(make_cfg("train", [*SHORT, "logger=wandb", "seed=1"], run_dir=tmp_path / "b"))
    (a,) = (tmp_path / "a" / "wandb").glob("offline-run-*")
    (b,) = (tmp_path / "b" / "wandb").glob("offline-run-*")
    assert a.name != b.name


def _wandb_run(run_dir: Path):
    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    return next(r.run for r in read_records(path) if r.WhichOneof("record_type") == "run")


def _mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient  # the optional extra, as the suite's MLflow tests need it

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lightsuite").experiment_id])
    return run


def test_multirun_jobs_are_named_after_their_overrides(multirun, tmp_path, clean_wandb_env):
    sweep = tmp_path / "sweep"
    tiny = [*FAST, *ONE_TINY_EPOCH, "task.test_pictures=false"]
    # one job is enough: its name comes from its own overrides (a sweep's jobs differ in theirs)
    multirun("--multirun", "logger=[wandb,mlflow]", "seed=3", *tiny, f"hydra.sweep.dir={sweep}")
    # Hydra's `override_dirname`: the job's overrides, sorted, joined by commas
    overrides = yaml.safe_load((sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    name = ",".join(sorted(overrides))
    assert "seed=3" in name and "logger=[wandb,mlflow]" in name
    assert _wandb_run(sweep / "0").display_name == name
    assert _mlflow_run(sweep / "0").info.run_name == name


def _hparams(events: EventAccumulator) -> tuple[dict, list[str]]:
    """The HParams tab's row of a run: its hyperparameters, and the names of its metrics."""
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {}
    for key, value in start.session_start_info.hparams.items():
        values[key] = getattr(value, value.WhichOneof("kind"))
    return values, [info.name.tag for info in experiment.experiment.metric_infos]


def test_tags_and_hparams_reach_every_dashboard(make_cfg, tmp_path, clean_wandb_env):
    overrides = ["logger=[tensorboard,wandb,mlflow]", "tags=[ci,nightly]", "task.optimizer.lr=0.05"]
    metrics = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH, *overrides]))
    run = tmp_path / "run"
    assert list(_wandb_run(run).tags) == ["ci", "nightly"]
    mlflow_run = _mlflow_run(run)
    assert {mlflow_run.data.tags.get(t) for t in ("ci", "nightly")} == {"true"}

    # TensorBoard's HParams tab: one row, the flattened scalar config beside the metrics.json values
    events = EventAccumulator(str(run / "tensorboard" / "hparams"))
    events.Reload()
    hparams, names = _hparams(events)
    assert hparams["tags"] == "ci,nightly"
    assert hparams["task/optimizer/lr"] == pytest.approx(0.05)
    assert hparams["seed"] == 42 and hparams["model/_target_"] == "lightsuite.models.resnet.resnet20"
    assert not any(key.startswith(("paths/", "logger/")) for key in hparams)
    assert sorted(names) == sorted(metrics)
    for name in names:
        assert events.Scalars(name)[-1].value == pytest.approx(metrics[name]), name
    # the run's own curves keep only what the run logged: one test/acc point
    curves = EventAccumulator(str(run / "tensorboard"))
    curves.Reload()
    assert len(curves.Scalars("test/acc")) == 1


def test_a_run_prints_nothing_a_user_cannot_act_on(make_cfg, monkeypatch, capfd, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    # W&B says each warning once per process, and stays silent once a test ran it with WANDB_SILENT
    monkeypatch.setattr(wandb.errors.term, "_printed_messages", set())
    monkeypatch.setattr(wandb.errors.term, "_silent", False)
    monkeypatch.setattr(wandb.errors.term, "_show_warnings", True)
    # the model summary on (FAST turns it off), the progress bar off
    cfg = make_cfg("train", ["callbacks.rich_progress_bar=null", *ONE_TINY_EPOCH, "logger=wandb"])
    with caplog.at_level("INFO"):
        train(cfg)
    out, err = capfd.readouterr()
    printed = out + err + caplog.text
    assert "Trainable params" in printed  # the summary was shown: what follows is not vacuous
    for noise in ("💡 Tip", "litlogger", "anonymous setting has no effect", "Total FLOPs", "FLOPs"):
        assert noise not in printed, noise


def test_a_logger_that_cannot_be_built_leaves_no_run_behind(tmp_path):
    pytest.importorskip("pytorch_lightning.loggers.comet")
    if importlib.util.find_spec("comet_ml") is not None:
        pytest.skip("comet-ml is installed: CometLogger can be built")
    run = tmp_path / "run"
    proc = run_cli(
        "lightsuite.train",
        "logger=csv",
        "logger.csv._target_=pytorch_lightning.loggers.CometLogger",
        "~logger.csv.version",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: could not build `logger.csv` (pytorch_lightning.loggers.CometLogger)")
    # nothing of a run: no config, no run.json, no log of a seed set or a Trainer built ...
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "train.log"]
    # ... only the error, which is how `lightsuite-report` tells why a run dir holds no results
    (record,) = (run / "train.log").read_text().strip().splitlines()
    assert record.endswith(line)

"""Every logger choice writes a run that can be read back from disk, and W&B is closed after it."""

from __future__ import annotations

import csv
import json
import os

import pytest
import wandb
from conftest import FAST
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
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

    events = EventAccumulator(str(next((run / "tensorboard").rglob("events.out.tfevents.*")).parent))
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

"""W&B runs of a sweep: one run per job, grouped by sweep, continued after a resume; MLflow's local store."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import FAST, ONE_TINY_EPOCH, run_cli
from mlflow.tracking import MlflowClient
from wandb_records import read_records

from lightsuite.train import train

TINY = [*FAST, *ONE_TINY_EPOCH]


def _run_file(job_dir: Path) -> list:
    (path,) = (job_dir / "wandb").glob("offline-run-*/run-*.wandb")
    return read_records(path)


def _finished_records(path: Path, timeout: float = 60) -> list:
    """The run file's records once W&B's service has written them out (it may lag `wandb.finish`)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        kinds = {r.WhichOneof("record_type") for r in records}
        if {"run", "exit"} <= kinds or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _of(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def _config(records: list) -> dict:
    out = {}
    for config in _of(records, "config"):
        for item in config.update:
            key = item.key or "/".join(item.nested_key)
            out[key] = json.loads(item.value_json)
    return out


def _summary(records: list) -> dict:
    out = {}
    for summary in _of(records, "summary"):
        for item in summary.update:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


@pytest.mark.slow
def test_offline_multirun_gives_one_wandb_run_per_job_in_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "-m",
        "logger=wandb",
        "seed=1,2",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = []
    for job, seed in (("0", 1), ("1", 2)):
        records = _run_file(sweep / job)
        (run,) = _of(records, "run")
        config, summary = _config(records), _summary(records)
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert config["seed"] == seed
        assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
        # the job closed its run (an exit record), failed or not, before the next job began
        assert _of(records, "exit"), f"job {job}'s run was never finished"
        runs.append(run)
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].run_group == runs[1].run_group == "/".join(sweep.resolve().parts[-2:])


def test_resumed_job_continues_its_wandb_run(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    # a constant lr: a finished cosine has no schedule left to stretch over a longer resume
    train(make_cfg("train", [*TINY, "logger=wandb", "task/scheduler=constant"]))
    # the same run dir again, one epoch longer: auto-resume from last.ckpt, and the same W&B run id
    train(make_cfg("train", [*TINY, "logger=wandb", "task/scheduler=constant", "trainer.max_epochs=2"]))
    files = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    records = [_finished_records(f) for f in files]
    ids = {_of(r, "run")[0].run_id for r in records}
    assert len(ids) == 1
    assert ids == {(tmp_path / "run" / "wandb" / "run_id").read_text().strip()}
    assert _of(records[0], "run")[0].run_group == ""  # a single run has no sweep group


def _csv_series(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The CSV logger's rows as (step, value) per metric: a second record of the same run."""
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    return series


def test_mlflow_logger_stores_params_metrics_steps_and_tags(make_cfg, tmp_path):
    # the default logger=mlflow store, next to the CSV logger; two epochs of two steps, each step logged
    overrides = ["logger=[csv,mlflow]", "tags=[ci,nightly]", "seed=7", "task.optimizer.lr=0.05"]
    cfg = make_cfg("train", [*TINY, *overrides, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"])
    metrics = train(cfg)
    run_dir = tmp_path / "run"

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lightsuite")
    assert Path(experiment.artifact_location.removeprefix("file://")) == run_dir / "mlruns"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert {run.data.tags.get(t) for t in ("ci", "nightly")} == {"true"}
    params = run.data.params
    assert (params["seed"], params["task/optimizer/lr"], params["trainer/max_epochs"]) == ("7", "0.05", "2")

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))

    # steps worked out by hand: 2 steps per epoch, validation at the last step of each epoch
    assert [step for step, _ in history("train/loss")] == [0, 1, 2, 3]
    assert [step for step, _ in history("val/acc")] == [1, 3]
    assert history("test/acc") == [(4, pytest.approx(metrics["test/acc"]))]
    # every series MLflow holds is the one the CSV logger wrote for the same run
    logged = _csv_series(run_dir / "csv" / "metrics.csv")
    assert set(run.data.metrics) == set(logged)
    for key, series in logged.items():
        stored = history(key)
        assert [step for step, _ in stored] == [step for step, _ in sorted(series)], key
        assert [value for _, value in stored] == pytest.approx([value for _, value in sorted(series)]), key

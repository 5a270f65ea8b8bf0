"""`metrics.json`: strict JSON, written whole or not at all (through `lightsuite.io`); `run.json`."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import pytorch_lightning
import torch

from lightsuite.run.files import float_metrics, save_metrics


def strict_json(text: str) -> object:
    """Parse as JSON proper: Python's json module otherwise accepts bare NaN and Infinity."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past `nbytes` fail with EFBIG, as on a full disk, whichever code does the writing."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < nbytes:
        pytest.skip("the hard file size limit is below what this test needs")
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


# a few kB of JSON, so a write cut at 1 kB is cut in the middle
MANY = {f"test/metric_{i:03d}": i / 7 for i in range(200)}


def test_metrics_round_trip_as_strict_json(tmp_path):
    path = save_metrics(MANY, tmp_path)
    assert path == tmp_path / "metrics.json"
    assert strict_json(path.read_text()) == pytest.approx(MANY)
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_non_finite_values_are_written_as_null(tmp_path):
    logged = {"val/acc": torch.tensor(0.5), "train/loss": torch.tensor(math.nan), "val/loss": math.inf}
    metrics = {**float_metrics(logged), "test/loss": -math.inf}
    text = save_metrics(metrics, tmp_path).read_text()
    assert strict_json(text) == {"val/acc": 0.5, "train/loss": None, "val/loss": None, "test/loss": None}


def test_a_failed_write_leaves_the_previous_metrics_untouched(tmp_path):
    old = save_metrics({"test/acc": 0.5}, tmp_path).read_text()
    with file_size_limit(1024), pytest.raises(OSError):
        save_metrics(MANY, tmp_path)
    assert (tmp_path / "metrics.json").read_text() == old
    # nothing half-written is left beside it for a reader to pick up
    assert os.listdir(tmp_path) == ["metrics.json"]
    # and the next write succeeds
    assert strict_json(save_metrics(MANY, tmp_path).read_text()) == pytest.approx(MANY)


def test_a_failed_first_write_leaves_no_metrics(tmp_path: Path):
    with file_size_limit(1024), pytest.raises(OSError):
        save_metrics(MANY, tmp_path / "run")
    assert os.listdir(tmp_path / "run") == []


def test_float_metrics_keeps_every_scalar_and_skips_the_rest():
    logged = {"val/confusion": torch.ones(2, 2), "val/acc": torch.tensor(0.5), "epoch": 3, "name": "x"}
    assert float_metrics(logged) == {"epoch": 3.0, "val/acc": 0.5}


# A value out of range for the object it configures, and the start of the one line that must name it.
# The optimizers and schedulers refuse theirs only at fit time (the task completes their partials).


def test_a_run_writes_its_task_report_metrics_and_provenance_into_run_json(make_cfg, tmp_path: Path):
    from conftest import FAST, ONE_TINY_EPOCH

    from lightsuite.run.checkpoints import load_checkpoint
    from lightsuite.tasks.classification import ClassificationTask
    from lightsuite.train import train

    train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH]))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["task"] == "lightsuite.tasks.classification.ClassificationTask"
    assert record["report_metrics"] == list(ClassificationTask.report_metrics)
    provenance = record["provenance"]
    # the run got to its metrics.json: its end is written, after its start, with a time zone
    start, end = (datetime.fromisoformat(provenance[k]) for k in ("start", "end"))
    assert start.tzinfo is not None and start <= end
    assert [s["end"] for s in provenance["segments"]] == [provenance["end"]]
    assert provenance["versions"]["pytorch_lightning"] == pytorch_lightning.__version__
    # the trainer's devices, filled in once it set up
    assert provenance["devices"]["accelerator"] == "cpu" and provenance["devices"]["device_count"] == 1
    # every checkpoint carries the same record (its end is not known when it is saved)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    saved = ckpt["lightsuite"]["provenance"]
    assert saved == {**provenance, "end": None, "segments": [{**provenance["segments"][0], "end": None}]}

"""`metrics.json` is strict JSON and is replaced whole or not at all; a refused config value is one line."""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import pickle
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import FAST, ONE_TINY_EPOCH
from omegaconf import OmegaConf

from lightsuite.errors import ConfigError, exit_on_user_error
from lightsuite.run.build import build, refusals_named
from lightsuite.run.files import float_metrics, save_metrics
from lightsuite.train import train


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
REFUSED = {
    "sgd-lr": (["task.optimizer.lr=-0.1"], "task.optimizer.lr=-0.1 was refused by SGD"),
    "adamw-lr": (
        ["task/optimizer=adamw", "task.optimizer.lr=-0.1"],
        "task.optimizer.lr=-0.1 was refused by AdamW",
    ),
    "onecycle": (["task/scheduler=onecycle", "task.scheduler.pct_start=2"], "task.scheduler.pct_start=2 was"),
    "multistep": (["task/scheduler=multistep", "task.scheduler.gamma=-0.5"], "task.scheduler.gamma=-0.5 was"),
    "trainer": (["trainer.max_epochs=-5"], "trainer.max_epochs=-5 was refused by Trainer"),
    # checked by Lightning only when fitting starts, against the number of batches
    "trainer-at-fit": (["+trainer.val_check_interval=1000"], "trainer.val_check_interval=1000 was refused"),
    "callback": (
        ["callbacks.model_checkpoint.save_top_k=-2"],
        "callbacks.model_checkpoint.save_top_k=-2 was",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_value_out_of_range_is_one_line_naming_its_key(make_cfg, tmp_path, capsys, case):
    overrides, start = REFUSED[case]
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH, *overrides]))
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), lines
    key = start.split("=")[0]
    assert f"; set {key} to a value" in lines[0]
    assert not list(tmp_path.rglob("metrics.json"))


def test_the_fix_offers_the_constructors_own_default():
    node = OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": -1})
    factory = build(node, "task.optimizer")  # completed later, as configure_optimizers does
    with pytest.raises(ConfigError) as err:
        factory([torch.nn.Parameter(torch.zeros(2))])
    default = inspect.signature(torch.optim.SGD).parameters["momentum"].default
    assert str(err.value) == (
        "task.optimizer.momentum=-1 was refused by SGD: Invalid momentum value: -1; "
        "set task.optimizer.momentum to a value SGD accepts, "
        f"e.g. its default task.optimizer.momentum={default}"
    )


def test_other_errors_keep_their_type_and_traceback():
    """Only an error that names a key of the node is rephrased: a bug must stay a bug."""
    node = OmegaConf.create({"_target_": "pytorch_lightning.Trainer", "max_epochs": 3, "devices": 1})
    with pytest.raises(ValueError, match="shapes"), refusals_named(node, "trainer"):
        raise ValueError("shapes (3, 4) and (5,) do not match")
    refused = pytest.raises(ConfigError, match=r"^trainer\.max_epochs=3 was refused by Trainer")
    with refused, refusals_named(node, "trainer"):
        raise ValueError("`max_epochs` must be at most 2")


def test_configured_partials_stay_partials_through_pickling(make_cfg):
    """DDP's spawn pickles the task with its optimizer and scheduler factories."""
    net = torch.nn.Linear(4, 3)
    net.num_classes = 3
    task = build(make_cfg("train").task, "task", net=net)
    factory = pickle.loads(pickle.dumps(task.optimizer_factory))
    assert isinstance(factory, functools.partial) and factory.func is torch.optim.SGD
    assert factory.keywords == {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4}
    assert factory.key == "task.optimizer"
    optimizer = factory([torch.nn.Parameter(torch.zeros(2))])
    assert optimizer.param_groups[0]["lr"] == 0.1

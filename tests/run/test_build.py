"""`metrics.json` is strict JSON and is replaced whole or not at all; a refused config value is one line."""

from __future__ import annotations

import functools
import inspect
import pickle

import pytest
import torch
from conftest import FAST, ONE_TINY_EPOCH
from omegaconf import OmegaConf

from lightsuite.errors import ConfigError, exit_on_user_error
from lightsuite.run.build import build, refusals_named
from lightsuite.train import train

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

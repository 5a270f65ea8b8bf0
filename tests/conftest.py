"""Shared fixtures: compose configs the way the entry points do, with outputs under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from lightsuite import CONFIG_DIR
from lightsuite.config.resolvers import register_resolvers

# as the entry points do when imported: configs composed here resolve the same
register_resolvers()

# the in-process multirun fixture (`multirun`) for the sweep tests
pytest_plugins = ["sweep_files"]

# `make test` runs the suite on pytest-xdist workers: each gets its share of the cores (torch would take
# all of them in every worker, and oversubscribed cores run several times slower), and so do the
# processes a test starts
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _threads = max(1, (os.cpu_count() or 1) // _workers)
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The SLURM tests share the one node: under xdist (`--dist loadgroup`) one worker runs them all,
    first, while the other workers take the rest (last, they would be a long tail on one worker)."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))


# quiet, fast runs: no redraws, no model summary, one thread per rank
FAST = ["callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null"]
# four epochs of four batches, no early stop: long enough for an Optuna pruner to compare trials
FEW_EPOCHS = [
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "callbacks.early_stopping=null",
]
# a ResNet-8 (one block per stage), three epochs of the digits: about 90% test accuracy in seconds, enough
# for attacks to bite and for fooling images to reach 99% (one epoch leaves it too unsure)
RESNET8_DIGITS = [
    "model._target_=lightsuite.models.resnet.cifar_resnet",
    "+model.depth=8",
    "task/optimizer=adamw",
    "task.optimizer.lr=0.01",
    "task/scheduler=constant",
    "trainer.max_epochs=3",
]
# a conditional ring learnt in 128 generator steps (tests/tasks/test_conditional_gan.py measures it)
CGAN_RING = [*FAST, "experiment=gaussians_cgan", "data.num_train=32768", "data.num_val=200"]
CGAN_RING += ["data.num_test=200", "model.hidden_size=64", "task.g_optimizer.lr=4e-3"]
CGAN_RING += ["task.d_optimizer.lr=4e-3", "trainer.max_epochs=1", "task.sample_every_n_epochs=0"]
CGAN_RING += ["seed=0", "data.seed=0"]
# one epoch of two training batches, one validation and one test batch, no sanity check
ONE_TINY_EPOCH = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`make_cfg("train", ["model=plain20"])`: a composed config writing into tmp_path/run."""

    def _make(config_name: str = "train", overrides: list[str] | None = None, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides or []))
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
            cfg.paths.log_dir = str(tmp_path / "outputs")
            if "data_dir" in cfg.get("data", {}):
                cfg.data.data_dir = str(tmp_path / "data")
        GlobalHydra.instance().clear()
        return cfg

    return _make


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """Run `python -m <module> args...` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "LIGHTSUITE_ROOT": str(cwd), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )

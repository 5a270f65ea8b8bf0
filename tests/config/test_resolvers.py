"""Resolvers are registered by whoever composes (entry points, conftest), never as an import side effect."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from lightsuite.config.checks import check_config
from lightsuite.config.resolvers import RESOLVERS, register_resolvers
from lightsuite.errors import ConfigError


def test_library_modules_register_nothing_and_the_entry_points_register_all():
    probe = (
        "import lightsuite.run.build, lightsuite.run.loggers\n"
        "import lightsuite.launch.sweeps, lightsuite.launch.ddp, lightsuite.launch.slurm_submit\n"
        "from omegaconf import OmegaConf\n"
        f"names = {RESOLVERS!r}\n"
        "print(sorted(n for n in names if OmegaConf.has_resolver(n)))\n"
        "import lightsuite.train\n"
        "print(sorted(n for n in names if OmegaConf.has_resolver(n)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", str(sorted(RESOLVERS))]


@pytest.fixture
def without_mlflow_tags():
    OmegaConf.clear_resolver("mlflow_tags")
    yield
    register_resolvers()


def test_a_config_composed_without_the_resolvers_says_how_to_register_them(make_cfg, without_mlflow_tags):
    cfg = make_cfg("train", ["logger=mlflow"])
    with pytest.raises(
        ConfigError, match=r"^logger.mlflow.tags: .*mlflow_tags; call .*register_resolvers\(\)"
    ):
        check_config(cfg)
    register_resolvers()
    check_config(cfg)

"""Check every job of a sweep before the first one starts.

Hydra composes each job of a multirun only when its turn comes, so a typo in the fourth value of
a sweep used to surface after three jobs had trained (or after a cluster queue). This Hydra
callback expands the sweep the way the basic sweeper will, composes every job, checks it
(`check_config`) and builds its network and task (the constructors' range checks), loading no
data. One bad job refuses the whole sweep, with one line naming the job and the problem.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from lightsuite.config.checks import check_config
from lightsuite.errors import LightsuiteError, user_error

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
PARALLEL_LAUNCHER = "hydra_plugins.lightsuite_launcher.parallel_launcher.ParallelLauncher"


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch, in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_job(config_name: str, overrides: list[str]) -> None:
    """Compose one job as the launcher will and check it; raises what the job would have raised."""
    from lightsuite.run.build import build_run

    loader = GlobalHydra.instance().config_loader()
    cfg = loader.load_configuration(config_name, overrides, run_mode=RunMode.MULTIRUN)
    with open_dict(cfg):
        del cfg["hydra"]
    check_config(cfg)
    if "model" in cfg and "task" in cfg and "data" in cfg:
        build_run(cfg)


class PreflightCheck(Callback):
    """On multirun start: every job composed, checked and built before any job runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.launcher.get("_target_") == PARALLEL_LAUNCHER:
            from lightsuite.errors import exit_on_user_error
            from lightsuite.launch.parallel import plan

            with exit_on_user_error():  # n_parallel and the GPUs it asks for, before any job is built
                plan(config.hydra.launcher, config)
        if (
            config.hydra.sweeper.get("_target_") != BASIC_SWEEPER
            or not GlobalHydra.instance().is_initialized()
        ):
            return  # other sweepers (Optuna) draw their jobs as they go; each checks itself on start
        config_name = kwargs.get("config_name") or config.hydra.job.config_name
        jobs = sweep_jobs(config)
        for number, overrides in enumerate(jobs):
            try:
                check_job(config_name, overrides)
            except (HydraException, OmegaConfBaseException, LightsuiteError) as exc:
                err = user_error(exc) or exc
                message = " ".join(str(err).split("Config search path")[0].split())
                print(
                    f"error: job {number} of {len(jobs)} ({' '.join(overrides)}): {message}; "
                    "no job was started",
                    file=sys.stderr,
                )
                raise SystemExit(1) from None

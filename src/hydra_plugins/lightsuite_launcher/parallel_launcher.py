"""`hydra/launcher=parallel`: `n_parallel` jobs of a sweep at once on this machine, each in a fresh
interpreter pinned to its own GPUs and cores.

Hydra imports every plugin module whenever it scans for plugins, in every Hydra app of the
environment: the work is in `lightsuite.launch.parallel`, imported only when a sweep is launched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class ParallelLauncher(Launcher):
    """Runs a sweep's jobs in a pool of `n_parallel` local processes (see `lightsuite.launch.parallel`).

    Each job starts as a slot frees; concurrent `launch` calls (the Optuna sweeper's `n_jobs`
    trials) share the one pool, so never more than `n_parallel` jobs run at once.
    """

    def __init__(self, **params: Any) -> None:
        self.params = {
            k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in params.items()
        }
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.run: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from lightsuite.launch.parallel import ParallelRun

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.run = ParallelRun(self)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lightsuite.errors import exit_on_user_error

        with exit_on_user_error():
            return self.run.launch(job_overrides, initial_job_idx)

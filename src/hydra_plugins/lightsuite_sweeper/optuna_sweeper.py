"""`hydra/sweeper=optuna`: the suite's Optuna search (persistent studies, resume, pruning, parallel trials).

Hydra only instantiates sweepers that live in the `hydra_plugins` namespace; the work is done in
`lightsuite.launch.optuna_search`, imported only when a search starts: Hydra imports every plugin
module whenever it scans for plugins, in every Hydra app of the environment.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Asks the study for trials, launches them through the configured launcher, tells the results.

    Its settings are read from `hydra.sweeper` when the search starts (`optuna_search.read_settings`),
    so a wrong one is refused with one line rather than inside Hydra's instantiation.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from lightsuite.launch.optuna_search import search

        return search(self, arguments)

"""The OmegaConf resolvers that `conf/` uses, registered once, explicitly, by whoever composes a config.

The entry points (`train`, `eval`, `sample`) call `register_resolvers()` when they are imported, so
a job that submitit unpickles in another process has them as well; tests call it in `conftest.py`.
Importing this module registers nothing and loads nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf


def sweep_id() -> str | None:
    """The id that groups a multirun's jobs (on W&B): its sweep dir's last two parts; None for one run."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return None
    parts = Path(str(HydraConfig.get().sweep.dir)).resolve().parts
    return "/".join(parts[-2:])


def sweep_job_name() -> str | None:
    """A multirun job's name on the dashboards (W&B, MLflow): its overrides, as Hydra joins them for
    `hydra.job.override_dirname` (`model=plain20,seed=1`); None for a single run, whose name the
    logger picks (W&B's generated name, MLflow's).

    Keys listed in `hydra.job.config.override_dirname.exclude_keys` are left out of the name.
    """
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return None
    try:
        name = str(HydraConfig.get().job.override_dirname)
    except Exception:  # a sweep-level config (preflight composes every job) has no job of its own yet
        return None
    return name or None


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """GPUs a SLURM job asks for per node: the trainer's devices on GPU, none on the CPU."""
    return None if str(accelerator) == "cpu" else int(devices)


# the resolvers `conf/` uses, by name
RESOLVERS = ("sweep_id", "sweep_job_name", "wandb_run_id", "mlflow_tags", "gpus_per_node")


def register_resolvers() -> None:
    """Register every resolver `conf/` uses (again is harmless: the same functions replace themselves).

    `${sweep_id:}` (logger/wandb.yaml), `${sweep_job_name:}` (logger/wandb.yaml, logger/mlflow.yaml),
    `${wandb_run_id:${paths.output_dir}}` (logger/wandb.yaml),
    `${mlflow_tags:${tags}}` (logger/mlflow.yaml), `${gpus_per_node:...}` (hydra/launcher/slurm.yaml).
    """
    from lightsuite.run.loggers import mlflow_tags, wandb_run_id

    functions = {
        "sweep_id": sweep_id,
        "sweep_job_name": sweep_job_name,
        "wandb_run_id": wandb_run_id,
        "mlflow_tags": mlflow_tags,
        "gpus_per_node": gpus_per_node,
    }
    for name in RESOLVERS:
        OmegaConf.register_new_resolver(name, functions[name], replace=True)

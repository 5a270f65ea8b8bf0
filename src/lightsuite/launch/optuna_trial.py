"""The job side of an Optuna search: the study's storage, and each epoch's value told to the trial.

The sweeper (`optuna_search`) hands each job its trial as three Hydra overrides,
`hydra.sweeper.storage`, `hydra.sweeper.study_name` and `hydra.sweeper.trial`. The job re-opens
the trial through the shared storage, reports the monitored metric after every validation and asks
the study's pruner whether to go on: this works wherever the job runs (in the sweep's process, in a
submitit process, on another SLURM node), as long as the storage is reachable from there.
A pruned job stops at the end of that epoch, skips its test stage and says so in its
`job_status.json`; the sweeper then tells the study the trial was pruned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lightsuite.errors import ConfigError
from lightsuite.launch.ddp import in_multirun

SWEEPER = "hydra_plugins.lightsuite_sweeper.optuna_sweeper.OptunaSweeper"
JOURNAL = "optuna.journal"
PRUNERS = {
    "median": ("optuna.pruners.MedianPruner", {"n_startup_trials": 4, "n_warmup_steps": 1}),
    "successive_halving": ("optuna.pruners.SuccessiveHalvingPruner", {}),
    "hyperband": ("optuna.pruners.HyperbandPruner", {"min_resource": 1}),
    "none": ("optuna.pruners.NopPruner", {}),
}
# set by a trial's rank 0 for the DDP ranks Lightning starts (they inherit it): follow its decisions
TRIAL_RANKS = "LIGHTSUITE_OPTUNA_TRIAL"
# this process's current job: the epoch and value it was pruned at (empty: not pruned)
_pruned: dict[str, Any] = {}


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """Where the study lives: an RDB URL as given, or a journal file's absolute path."""
    if storage and str(storage).startswith("sqlite:///") and not str(storage).startswith("sqlite:////"):
        # a relative SQLite path, made absolute: the jobs may run from another directory
        return "sqlite:///" + str(Path(str(storage)[len("sqlite:///") :]).expanduser().absolute())
    if storage and "://" in str(storage):
        return str(storage)
    return str(Path(str(storage) if storage else Path(sweep_dir) / JOURNAL).expanduser().absolute())


def open_storage(url: str) -> Any:
    """Optuna's storage for `url`: a journal file (locking that works on cluster file systems) or an RDB."""
    import optuna

    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # SQLAlchemy's many errors for a bad URL or an unreachable server
            raise ConfigError(
                f"hydra.sweeper.storage={url} cannot be opened ({str(exc).splitlines()[0][:200]}); use "
                "sqlite:///path/to/file.db, a journal file path, or null for <sweep dir>/optuna.journal"
            ) from None
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # open(O_CREAT|O_EXCL) locks, which NFSv3 and later honour (Optuna's advice for shared disks)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
    except OSError as exc:
        raise ConfigError(
            f"hydra.sweeper.storage={url} cannot be written ({exc.strerror}); choose a writable path"
        ) from None


def make_pruner(spec: Any) -> Any:
    """`median`, `successive_halving`, `hyperband`, `none`, or a `_target_` config of any pruner."""
    from hydra.utils import get_class, instantiate

    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        if spec not in PRUNERS:
            raise ConfigError(
                f"hydra.sweeper.pruner={spec} is not a pruner: use one of {', '.join(PRUNERS)}, or a "
                "config with _target_ (e.g. optuna.pruners.PercentilePruner)"
            )
        target, kwargs = PRUNERS[spec]
        return get_class(target)(**kwargs)
    import optuna

    fix = "a pruner's name (median, successive_halving, hyperband, none) or a config with _target_"
    if not (isinstance(spec, dict) and "_target_" in spec):
        raise ConfigError(f"hydra.sweeper.pruner={spec} is not a pruner: give {fix}")
    try:
        pruner = instantiate(spec)
    except Exception as exc:
        said = " ".join(str(exc).split(", set env var HYDRA_FULL_ERROR")[0].split())[:300]
        raise ConfigError(f"hydra.sweeper.pruner: {said}; check its _target_ and arguments") from None
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ConfigError(f"hydra.sweeper.pruner: {spec['_target_']} is not an Optuna pruner: give {fix}")
    return pruner


@dataclass(frozen=True)
class TrialRef:
    """Which trial of which study this job is, and what it reports."""

    storage: str
    study_name: str
    number: int
    monitor: str
    pruner: Any


def trial_of_this_job(cfg: DictConfig) -> TrialRef | None:
    """This job's trial when an Optuna search launched it (not in its extra DDP ranks)."""
    if not in_multirun():
        return None
    sweeper = HydraConfig.get().sweeper
    if sweeper.get("_target_") != SWEEPER or sweeper.get("trial") is None:
        return None
    pruner = sweeper.get("pruner")
    pruner = OmegaConf.to_container(pruner, resolve=True) if isinstance(pruner, DictConfig) else pruner
    return TrialRef(
        str(sweeper.storage), str(sweeper.study_name), int(sweeper.trial), str(cfg.optimized_metric), pruner
    )


def pruned_after(epoch: int) -> str:
    """How a pruned job is described: the epochs it trained (`epoch` counts from 0, as Lightning's)."""
    return f"pruned after {epoch + 1} epoch{'s' * (epoch != 0)}"


def pruned_record() -> dict[str, Any]:
    """The epoch and value this process's current job was pruned at; empty when it was not."""
    return dict(_pruned)


def forget_pruning() -> None:
    """A new job of the sweep starts: it was not pruned, and is not a trial until it finds its own."""
    _pruned.clear()
    os.environ.pop(TRIAL_RANKS, None)

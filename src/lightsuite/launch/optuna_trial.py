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

import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lightsuite.errors import ConfigError
from lightsuite.launch.ddp import SWEEP_RANK, in_multirun
from lightsuite.launch.slurm_task import slurm_job_id

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


def trial_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The reporting callback when this job is a trial (none otherwise), on every DDP rank.

    Ranks SLURM starts run the job itself and find its trial; ranks Lightning starts run the job's
    command line without the sweeper's overrides, so rank 0 leaves them a mark in the environment
    they inherit: they follow rank 0's decisions (the pruning is a collective step).
    """
    _pruned.clear()
    ref = trial_of_this_job(cfg)
    if ref is not None and cfg.get("optimized_metric"):
        os.environ[TRIAL_RANKS] = "1"
        return [TrialReport(ref)]
    if os.environ.get(TRIAL_RANKS) and os.environ.get(SWEEP_RANK):
        return [TrialReport(None)]
    return []


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


def was_pruned(trainer: pl.Trainer) -> bool:
    """Whether rank 0 pruned this job, on every rank (so that all skip the test stage together)."""
    pruned = bool(_pruned)
    if trainer.world_size > 1:
        pruned = bool(trainer.strategy.broadcast(pruned, src=0))
    return pruned


class TrialReport(pl.Callback):
    """After every validation: report the monitored metric to the trial, and stop if the pruner says so.

    Global rank 0 talks to the storage and decides; with several ranks the decision is broadcast
    (Lightning does not reduce `should_stop` set by a callback), so all ranks stop at the same
    validation and skip the test stage together. `ref` is None on ranks that only follow.
    """

    def __init__(self, ref: TrialRef | None) -> None:
        self.ref = ref
        self._study: Any = None
        self._storage: Any = None
        self._trial_id: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self.ref is None:
            return
        import optuna

        storage = self._storage = open_storage(self.ref.storage)
        try:
            self._study = optuna.load_study(
                study_name=self.ref.study_name,
                storage=storage,
                pruner=make_pruner(self.ref.pruner),
                sampler=optuna.samplers.RandomSampler(),
            )
        except KeyError:
            raise ConfigError(
                f"this job finds no study {self.ref.study_name} in {self.ref.storage}: put the study's "
                "storage where every node can reach it (hydra.sweeper.storage, or the sweep dir on a "
                "shared file system)"
            ) from None
        study_id = storage.get_study_id_from_name(self.ref.study_name)
        self._trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.ref.number)
        # who runs the trial: a resumed search does not start it a second time while this job lives
        job = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": slurm_job_id() or None}
        storage.set_trial_user_attr(self._trial_id, "job", job)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or _pruned:
            return
        pruned = self._decide(trainer) if trainer.is_global_zero else None
        if trainer.world_size > 1:
            pruned = trainer.strategy.broadcast(pruned, src=0)
        if pruned:
            _pruned.update(pruned)
            trainer.should_stop = True

    def _decide(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """Report this validation's value; the epoch and value if the pruner stops the trial here."""
        if self._trial_id is None or self.ref is None:
            return None
        value = trainer.callback_metrics.get(self.ref.monitor)
        if value is None or not math.isfinite(float(value)):
            return None  # a non-finite value fails the job (the divergence checks), not the pruner's business
        from optuna.exceptions import UpdateFinishedTrialError

        storage, epoch = self._storage, trainer.current_epoch
        try:
            storage.set_trial_intermediate_value(self._trial_id, epoch, float(value))
        except UpdateFinishedTrialError:
            self._trial_id = None  # the study already closed this trial (a resumed search): stop reporting
            return None
        if not self._study.pruner.prune(self._study, storage.get_trial(self._trial_id)):
            return None
        storage.set_trial_user_attr(self._trial_id, "pruned_at_epoch", epoch)
        print(
            f"optuna: trial {self.ref.number} {pruned_after(epoch)}: "
            f"{self.ref.monitor}={float(value):.4g} is not promising",
            file=sys.stderr,
            flush=True,
        )
        return {"epoch": epoch, "value": float(value)}

"""The Lightning side of an Optuna trial: each validation's value told to the study, and the pruner's stop.

Kept apart from `optuna_trial` (the storage, the trial's identity, what a sweep records), which the
entry points import before torch and Lightning load.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from lightsuite.errors import ConfigError
from lightsuite.launch.ddp import SWEEP_RANK
from lightsuite.launch.optuna_trial import (
    TRIAL_RANKS,
    TrialRef,
    _pruned,
    make_pruner,
    open_storage,
    pruned_after,
    trial_of_this_job,
)
from lightsuite.launch.slurm_task import slurm_job_id


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

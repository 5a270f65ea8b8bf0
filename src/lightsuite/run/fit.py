"""What `lightsuite-train` does once its config passed the import-free check: fit, test, `metrics.json`.

Apart from the entry point so that `lightsuite-train --help` and a wrong value answer before torch
and Lightning load (train.py imports this module only to run).
"""

from __future__ import annotations

import sys
import time
import warnings

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from lightsuite.launch.ddp import announce_rank, prepare_launch
from lightsuite.launch.optuna_report import trial_callbacks, was_pruned
from lightsuite.launch.slurm_task import task_plugins
from lightsuite.run.budget import budget_line
from lightsuite.run.build import build, build_all, prepare_run, refusals_named, report_dry_run
from lightsuite.run.callbacks import Stopwatch
from lightsuite.run.checkpoints import RunRecord
from lightsuite.run.compile import compile_callbacks
from lightsuite.run.files import float_metrics, save_metrics, save_run_end
from lightsuite.run.loggers import build_loggers, built_loggers, log_hparams_row
from lightsuite.run.resume import (
    RandomStates,
    announce_resume,
    best_checkpoint,
    check_resumable,
    finished_run,
    interrupts_explained,
    keep_logged_epochs,
    keep_logged_wandb_steps,
    resume_checkpoint,
)
from lightsuite.run.transfer import freezing_callbacks
from lightsuite.tasks.steps import logger_step

# in-memory tensor sets are batched by slicing: worker processes would only add overhead
warnings.filterwarnings("ignore", ".*does not have many workers.*")
# raised inside Lightning's own pytree use with newer torch; nothing a user can act on
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def fit_and_test(cfg: DictConfig, started: float | None = None) -> dict[str, float]:
    """Build every object from `cfg`, fit, test the best checkpoint and return the final metrics.

    With `dry_run=true` it stops after building the network and task (no data loaded) and
    returns an empty dict. A trial an Optuna search prunes stops fitting and is not tested.
    A re-run of a finished run returns its `metrics.json` (`finished_run`). It ends with one line
    on where the time went, counted from `started` (a `time.perf_counter()` reading; see `Stopwatch`).
    """
    ckpt_path = cfg.get("ckpt_path")
    fit = cfg.get("train", True)
    # `ckpt_path`, or this run dir's own last.ckpt (a re-run or requeue of a killed job)
    resume = None if cfg.get("dry_run", False) else resume_checkpoint(cfg) if fit else ckpt_path
    saved = check_resumable(cfg, resume) if resume else None
    over = None
    if fit and saved is not None:
        over, kept = finished_run(cfg, saved)
        if kept is not None:
            return kept
        announce_resume(cfg, saved.path)
    # built before prepare_run writes the run's files: a logger that cannot be built leaves no run behind
    loggers = [] if cfg.get("dry_run", False) else build_loggers(cfg.get("logger"))
    datamodule, task = prepare_run(cfg)
    if cfg.get("dry_run", False):
        report_dry_run(cfg, task)
        return {}
    callbacks = build_all(cfg.get("callbacks"), "callbacks")
    # every checkpoint carries its config, so it can be re-tested and sampled from on its own
    callbacks.append(RunRecord(OmegaConf.to_container(cfg, resolve=True), datamodule.net_kwargs))
    callbacks.append(RandomStates())
    stopwatch = Stopwatch(time.perf_counter() if started is None else started)
    callbacks.append(stopwatch)
    # a trial of an Optuna search reports each epoch's objective and stops when pruned
    callbacks += trial_callbacks(cfg)
    # `task.freeze=backbone`: the head trains alone until `task.unfreeze_at_epoch`
    callbacks += freezing_callbacks(cfg, task)
    callbacks += compile_callbacks(cfg)

    metrics: dict[str, float] = {}
    with built_loggers(loggers):
        # in a SLURM task: SLURM's ranks, and requeueing left to submitit (launch/slurm_task.py)
        plugins = task_plugins()
        cluster = {} if cfg.trainer.get("plugins") else {"plugins": plugins or None}
        if not loggers:
            # the learning rate has nowhere to go, and Lightning's monitor refuses to start without a logger
            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, **cluster)
        prepare_launch(trainer)
        announce_rank(trainer, cfg)
        if saved is not None and fit:
            keep_logged_epochs(loggers, saved.epoch, saved.logged_step if saved.mid_epoch else None)
            keep_logged_wandb_steps(loggers, saved.epoch, saved.logged_step if saved.mid_epoch else None)
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if fit:
            with interrupts_explained(trainer, cfg), refusals_named(cfg.trainer, "trainer"):
                trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            budget = budget_line(trainer, cfg.trainer.get("max_time"))
            if budget and trainer.is_global_zero:
                print(budget, file=sys.stderr)
            # a fit with nothing left to train logs nothing: what it reported is in the checkpoint
            metrics.update(saved.fit_metrics if saved is not None and over else {})
            metrics.update(float_metrics(trainer.callback_metrics))
        # a pruned trial is not worth testing: its metrics.json holds what the fit reached
        if cfg.get("test", True) and not (fit and was_pruned(trainer)):
            ckpt = ckpt_path if not fit else best_checkpoint(trainer)
            with interrupts_explained(trainer, cfg):
                trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics.update(float_metrics(trainer.callback_metrics))
        # TensorBoard's HParams tab: this run's config beside its final metrics
        log_hparams_row(loggers, cfg, metrics, logger_step(trainer))

    save_metrics(metrics, cfg.paths.output_dir)
    save_run_end(cfg.paths.output_dir)  # the end time in run.json's provenance
    timing = stopwatch.summary()
    if timing and trainer.is_global_zero:
        print(timing, file=sys.stderr)
    return metrics

"""`lightsuite-train`: fit a task on a data set, test the best checkpoint, write `metrics.json`.

lightsuite-train                                  # digits + ResNet-20 on the CPU
lightsuite-train experiment=cifar10_resnet_paper model=plain56
lightsuite-train -m model=resnet20,plain20 seed=1,2,3
lightsuite-train model=resnet1202 dry_run=true    # check config, build, count parameters; no training
"""

from __future__ import annotations

import warnings

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from lightsuite import CONFIG_DIR
from lightsuite.config.resolvers import register_resolvers
from lightsuite.errors import exit_on_user_error
from lightsuite.launch.ddp import announce_rank, prepare_launch
from lightsuite.launch.optuna_trial import trial_callbacks, was_pruned
from lightsuite.launch.slurm_task import task_plugins
from lightsuite.launch.sweeps import keep_sweeping
from lightsuite.run.build import build, build_all, prepare_run, refusals_named, report_dry_run
from lightsuite.run.checkpoints import RunRecord
from lightsuite.run.files import float_metrics, metric_value, save_metrics
from lightsuite.run.loggers import built_loggers
from lightsuite.run.resume import (
    RandomStates,
    announce_resume,
    best_checkpoint,
    check_resumable,
    finished_run,
    interrupts_explained,
    keep_logged_epochs,
    resume_checkpoint,
)
from lightsuite.run.transfer import freezing_callbacks

# `conf/` uses them; a job that submitit unpickles elsewhere imports this module too
register_resolvers()

# in-memory tensor sets are batched by slicing: worker processes would only add overhead
warnings.filterwarnings("ignore", ".*does not have many workers.*")
# raised inside Lightning's own pytree use with newer torch; nothing a user can act on
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def train(cfg: DictConfig) -> dict[str, float]:
    """Build every object from `cfg`, fit, test the best checkpoint and return the final metrics.

    With `dry_run=true` it stops after building the network and task (no data loaded) and
    returns an empty dict. A trial an Optuna search prunes stops fitting and is not tested.
    A re-run of a finished run returns its `metrics.json` (`finished_run`).
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
    datamodule, task = prepare_run(cfg)
    if cfg.get("dry_run", False):
        report_dry_run(cfg, task)
        return {}
    callbacks = build_all(cfg.get("callbacks"), "callbacks")
    # every checkpoint carries its config, so it can be re-tested and sampled from on its own
    callbacks.append(RunRecord(OmegaConf.to_container(cfg, resolve=True), datamodule.net_kwargs))
    callbacks.append(RandomStates())
    # a trial of an Optuna search reports each epoch's objective and stops when pruned
    callbacks += trial_callbacks(cfg)
    # `task.freeze=backbone`: the head trains alone until `task.unfreeze_at_epoch`
    callbacks += freezing_callbacks(cfg, task)

    metrics: dict[str, float] = {}
    with built_loggers(cfg.get("logger")) as loggers:
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
            keep_logged_epochs(loggers, saved.epoch)
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if fit:
            with interrupts_explained(trainer, cfg), refusals_named(cfg.trainer, "trainer"):
                trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            # a fit with nothing left to train logs nothing: what it reported is in the checkpoint
            metrics.update(saved.fit_metrics if saved is not None and over else {})
            metrics.update(float_metrics(trainer.callback_metrics))
        # a pruned trial is not worth testing: its metrics.json holds what the fit reached
        if cfg.get("test", True) and not (fit and was_pruned(trainer)):
            ckpt = ckpt_path if not fit else best_checkpoint(trainer)
            with interrupts_explained(trainer, cfg):
                trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics.update(float_metrics(trainer.callback_metrics))

    save_metrics(metrics, cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@keep_sweeping
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` for sweepers."""
    with exit_on_user_error():
        metrics = train(cfg)
        if cfg.get("dry_run", False):
            return None
        return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()

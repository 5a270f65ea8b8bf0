"""`lightsuite-eval ckpt_path=...`: re-test a checkpoint and write its `metrics.json`.

The data, model and task sections come from the run record stored in the checkpoint (the training
run's resolved config), so a checkpoint is re-tested on exactly what it was trained with; set
`use_run_config=false` to build them from this command line instead.

Studies of the trained network run after the plain test, each chosen as a config group
(`lesion=blocks`, `attack=fgsm`): the group's node builds an `EvalStudy`, checked before any work,
whose metrics join the test's in `metrics.json`.

As `lightsuite-train` does, it answers `--help` and refuses a wrong value before torch and Lightning
load: this module imports them only once the config has passed the import-free check.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import hydra
from omegaconf import DictConfig, open_dict

from lightsuite import CONFIG_DIR
from lightsuite.config.checks import check_config, checkpoint_file
from lightsuite.config.resolvers import register_resolvers
from lightsuite.errors import exit_on_user_error

if TYPE_CHECKING:
    import pytorch_lightning as pl

# `conf/` uses them; a job that submitit unpickles elsewhere imports this module too
register_resolvers()

RUN_SECTIONS = ("data", "model", "task")

# the config groups of `eval.yaml` whose nodes build an `EvalStudy`, run in this order after the test
STUDIES = ("lesion", "attack")


class EvalStudy(Protocol):
    """A study of a tested checkpoint: `check` refuses a task it cannot study before any work starts
    (one `ConfigError`); calling it runs the study, writes its table and figure into `output_dir` and
    returns its metrics (`stage/name` keys)."""

    def check(self, task: pl.LightningModule) -> None: ...

    def __call__(
        self, task: pl.LightningModule, datamodule: pl.LightningDataModule, output_dir: Path
    ) -> dict[str, float]: ...


# the checkpoint's callbacks belong to its training run; testing needs none of them
warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` and return the test metrics."""
    check_config(cfg, imports=False)  # before torch loads: a wrong value answers in a second
    checkpoint_file(cfg.ckpt_path)
    from lightsuite.run.build import build, prepare_run
    from lightsuite.run.checkpoints import check_task, checkpoint_record, load_checkpoint
    from lightsuite.run.files import float_metrics, save_metrics
    from lightsuite.run.loggers import built_loggers

    check_config(cfg)
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    record = checkpoint_record(load_checkpoint(ckpt_path), cfg.ckpt_path)
    if cfg.get("use_run_config", True):
        trained = record["config"]
        with open_dict(cfg):
            for key in RUN_SECTIONS:
                cfg[key] = trained[key]
    else:
        check_task(record, cfg.task._target_, cfg.ckpt_path)
    studies: list[EvalStudy] = [build(cfg[key], key) for key in STUDIES if cfg.get(key)]
    datamodule, task = prepare_run(cfg)
    for study in studies:
        study.check(task)
    with built_loggers(cfg.get("logger")) as loggers:
        trainer = build(cfg.trainer, "trainer", logger=loggers)
        trainer.test(task, datamodule=datamodule, ckpt_path=str(ckpt_path), weights_only=True)
    metrics = float_metrics(trainer.callback_metrics)
    for study in studies:
        # the checkpoint's weights are in `task` now: `trainer.test` loaded them
        metrics.update(study(task, datamodule, Path(cfg.paths.output_dir)))
    save_metrics(metrics, cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    main()

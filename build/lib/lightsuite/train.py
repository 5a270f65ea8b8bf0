"""`lightsuite-train`: fit a task on a data set, test the best checkpoint, write `metrics.json`.

lightsuite-train                                  # digits + ResNet-20 on the CPU
lightsuite-train experiment=cifar10_resnet_paper model=plain56
lightsuite-train -m model=resnet20,plain20 seed=1,2,3
"""

from __future__ import annotations

import warnings

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from lightsuite import CONFIG_DIR
from lightsuite.errors import exit_on_user_error
from lightsuite.utils.checkpoints import RunRecord
from lightsuite.utils.launch import prepare_launch
from lightsuite.utils.resume import RandomStates, resume_checkpoint
from lightsuite.utils.runs import (
    build,
    build_all,
    built_loggers,
    float_metrics,
    metric_value,
    prepare_run,
    save_metrics,
)
from lightsuite.utils.sweeps import keep_sweeping

# in-memory tensor sets are batched by slicing: worker processes would only add overhead
warnings.filterwarnings("ignore", ".*does not have many workers.*")
# raised inside Lightning's own pytree use with newer torch; nothing a user can act on
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def train(cfg: DictConfig) -> dict[str, float]:
    """Build every object from `cfg`, fit, test the best checkpoint and return the final metrics."""
    datamodule, task = prepare_run(cfg)
    callbacks = build_all(cfg.get("callbacks"), "callbacks")
    # every checkpoint carries its config, so it can be re-tested and sampled from on its own
    callbacks.append(RunRecord(OmegaConf.to_container(cfg, resolve=True), datamodule.net_kwargs))
    callbacks.append(RandomStates())

    metrics: dict[str, float] = {}
    with built_loggers(cfg.get("logger")) as loggers:
        trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
        prepare_launch(trainer)
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if cfg.get("train", True):
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg))
            metrics.update(float_metrics(trainer.callback_metrics))
        if cfg.get("test", True):
            ckpt = cfg.get("ckpt_path") if not cfg.get("train", True) else _best_checkpoint(trainer)
            trainer.test(task, datamodule=datamodule, ckpt_path=ckpt)
            metrics.update(float_metrics(trainer.callback_metrics))

    save_metrics(metrics, cfg.paths.output_dir)
    return metrics


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The best checkpoint of this fit, or None (test the weights in memory) when none was kept."""
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or callback is None or not getattr(callback, "best_model_path", ""):
        return None
    return callback.best_model_path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@keep_sweeping
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` for sweepers."""
    with exit_on_user_error():
        return metric_value(train(cfg), cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()

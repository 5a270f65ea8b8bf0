"""`lightsuite-eval ckpt_path=...`: re-test a checkpoint and write its `metrics.json`.

The data, model and task sections come from the training run's `config.yaml` (found beside the
checkpoint's folder), so a checkpoint is re-tested on exactly what it was trained with; set
`use_run_config=false` to build them from this command line instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from lightsuite import CONFIG_DIR
from lightsuite.errors import ConfigError, exit_on_user_error
from lightsuite.utils.runs import (
    build,
    built_loggers,
    float_metrics,
    prepare_run,
    save_metrics,
)

RUN_SECTIONS = ("data", "model", "task")

# the checkpoint's callbacks belong to its training run; testing needs none of them
warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")


def run_config_for(ckpt_path: Path) -> Path | None:
    """The `config.yaml` of the run that wrote `ckpt_path` (`<run>/checkpoints/x.ckpt`), if present."""
    for folder in (ckpt_path.parent, ckpt_path.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` and return the test metrics."""
    ckpt_path = Path(cfg.ckpt_path).expanduser()
    if not ckpt_path.is_file():
        raise ConfigError(f"checkpoint {ckpt_path} not found: pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    run_config = run_config_for(ckpt_path) if cfg.get("use_run_config", True) else None
    if run_config is not None:
        trained = OmegaConf.load(run_config)
        with open_dict(cfg):
            for key in RUN_SECTIONS:
                cfg[key] = trained[key]
    datamodule, task = prepare_run(cfg)
    with built_loggers(cfg.get("logger")) as loggers:
        trainer = build(cfg.trainer, "trainer", logger=loggers)
        trainer.test(task, datamodule=datamodule, ckpt_path=str(ckpt_path))
    metrics = float_metrics(trainer.callback_metrics)
    save_metrics(metrics, cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    main()

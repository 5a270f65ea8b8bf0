"""`lightsuite-sample ckpt_path=...`: draw samples from a trained checkpoint, any family that samples.

lightsuite-sample ckpt_path=RUN/checkpoints/last.ckpt num_samples=64 output=grid.png   # a GAN
lightsuite-sample ckpt_path=RUN/checkpoints/last.ckpt label=7 output=sevens.png        # a conditional GAN
lightsuite-sample ckpt_path=RUN/checkpoints/last.ckpt prompt="def " length=500         # a language model
lightsuite-sample ckpt_path=RUN/checkpoints/last.ckpt output=fooling.png               # a classifier

The checkpoint rebuilds its own network and task from the run record stored in it; the task
decides what a sample is through its `sample_to(options)` method, so each family adds sampling
without a second entry point. `--help` and a wrong value answer before torch and Lightning load
(the import-free config check runs first), as in `lightsuite-train`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import hydra
from omegaconf import DictConfig

from lightsuite import CONFIG_DIR
from lightsuite.config.checks import check_config, checkpoint_file
from lightsuite.config.resolvers import register_resolvers
from lightsuite.errors import ConfigError, exit_on_user_error

# `conf/` uses them; a job that submitit unpickles elsewhere imports this module too
register_resolvers()


@runtime_checkable
class Samples(Protocol):
    """A task that can sample: writes or prints what `options` asks and returns a one-line summary."""

    def sample_to(self, options: DictConfig) -> str: ...


def sample(cfg: DictConfig) -> str:
    """Sample from `cfg.ckpt_path` as the options in `cfg` say; returns the summary line."""
    check_config(cfg, imports=False)  # before torch loads: a wrong value answers in a second
    checkpoint_file(cfg.ckpt_path)
    import torch

    from lightsuite.run.checkpoints import task_from_checkpoint

    check_config(cfg)
    task = task_from_checkpoint(cfg.ckpt_path)
    if not isinstance(task, Samples):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} is a checkpoint of {type(task).__name__}, which does not sample; "
            "lightsuite-sample takes checkpoints of GANs, the character language model and image classifiers "
            "(fooling images)"
        )
    if cfg.get("seed") is not None:
        torch.manual_seed(cfg.seed)
    with torch.inference_mode():
        return task.sample_to(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with exit_on_user_error():
        print(sample(cfg))


if __name__ == "__main__":
    main()

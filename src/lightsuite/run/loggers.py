"""A job's loggers, built and closed around it, and the ids that make a resumed run log to its own run.

Light at import (no Lightning): the W&B id and the MLflow tags are config resolvers
(`config/resolvers.py`), which any composing code registers, the entry points included.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig, OmegaConf

from lightsuite.io import write_text

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger

_NEW_RUN_IDS: dict[str, str] = {}


def wandb_run_id(output_dir: str) -> str:
    """This run dir's W&B run id, created once and kept in `wandb/run_id`, so a resumed job
    (auto-resume, a requeue) continues its own W&B run instead of starting a second one.

    Resolving the config writes nothing (config checks and dry runs resolve it too): a new id is
    remembered here and written by `keep_wandb_run_id` when the logger is really built.
    """
    path = Path(output_dir) / "wandb" / "run_id"
    if path.is_file():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    return _NEW_RUN_IDS.setdefault(str(output_dir), "".join(secrets.choice(alphabet) for _ in range(8)))


def keep_wandb_run_id(output_dir: str | os.PathLike) -> None:
    """Write the id handed out for `output_dir`, so that a later resume of this run finds it."""
    run_id = _NEW_RUN_IDS.pop(str(output_dir), None)
    path = Path(output_dir) / "wandb" / "run_id"
    if run_id and not path.is_file():
        write_text(path, run_id + "\n")


def mlflow_tags(tags: list[str] | ListConfig | None) -> DictConfig | None:
    """The run's `tags` list as MLflow tags: MLflow has no plain labels, only key-value pairs.

    A DictConfig, not a dict: `OmegaConf.resolve` (the run record) cannot store a resolver's dict.
    """
    return OmegaConf.create({str(tag): "true" for tag in tags}) if tags else None


@contextmanager
def built_loggers(node: DictConfig | None) -> Iterator[list[Logger]]:
    """Build the `logger` group for one job and close it afterwards, whatever happens.

    An offline `WandbLogger` sets `WANDB_MODE` for the whole process and an unfinished W&B run
    captures the next job's logs: both are undone here, so jobs of a sweep stay independent.
    """
    from pytorch_lightning.loggers import WandbLogger

    from lightsuite.run.build import build_all

    mode = os.environ.get("WANDB_MODE")
    loggers = build_all(node, "logger")
    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg.save_dir:
            keep_wandb_run_id(lg.save_dir)
    try:
        yield loggers
    finally:
        if any(isinstance(lg, WandbLogger) for lg in loggers):
            import wandb

            wandb.finish()
        if mode is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = mode

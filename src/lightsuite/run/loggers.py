"""A job's loggers, built and closed around it, and the ids that make a resumed run log to its own run.

Light at import (no Lightning): the W&B id and the MLflow tags are config resolvers
(`config/resolvers.py`), which any composing code registers, the entry points included.
"""

from __future__ import annotations

import logging
import math
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


def build_loggers(node: DictConfig | None) -> list[Logger]:
    """Build the `logger` group, before any run file is written: a logger that cannot be built (its
    package missing, a wrong target) then fails the run before it leaves a `config.yaml` behind.

    Building writes nothing (W&B and TensorBoard start their runs when first logged to; MLflow creates
    its store); `built_loggers` then keeps the W&B id and closes them.
    """
    from pytorch_lightning.loggers import WandbLogger

    from lightsuite.run.build import build_all

    quiet_lightning_tips()
    loggers = build_all(node, "logger")
    for lg in loggers:
        # Lightning passes `anonymous=None` to `wandb.init`, which W&B 0.31 answers, whatever the value,
        # with "The anonymous setting has no effect": left out, as W&B's own default
        init = getattr(lg, "_wandb_init", None) if isinstance(lg, WandbLogger) else None
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)
    return loggers


@contextmanager
def built_loggers(loggers: list[Logger] | DictConfig | None) -> Iterator[list[Logger]]:
    """Hold one job's loggers (built by `build_loggers`, or here from the `logger` group) and close
    them afterwards, whatever happens.

    An offline `WandbLogger` sets `WANDB_MODE` for the whole process and an unfinished W&B run
    captures the next job's logs: both are undone here, so jobs of a sweep stay independent.
    """
    from pytorch_lightning.loggers import WandbLogger

    if not isinstance(loggers, list):
        loggers = build_loggers(loggers)
    mode = os.environ.get("WANDB_MODE")
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


class _LightningTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: For seamless cloud logging ... litlogger"), nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning_tips() -> None:
    """Silence Lightning's tips to install its cloud products, logged on every Trainer it builds."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _LightningTips) for f in log.filters):
        log.addFilter(_LightningTips())


def hparams_row(cfg: DictConfig) -> dict[str, int | float | str | bool]:
    """The run's config as TensorBoard's HParams columns: flattened (`task/optimizer/lr`), scalars only,
    and the `tags` list as one comma-joined column (TensorBoard has no tags of its own). Where the run
    wrote (`paths`, `logger`) is left out: it differs in every run and says nothing about the result."""
    row: dict[str, int | float | str | bool] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}/")
        elif isinstance(node, (int, float, str, bool)):
            row[prefix.rstrip("/")] = node

    container = OmegaConf.to_container(cfg, resolve=True)
    walk({k: v for k, v in container.items() if k not in ("tags", "paths", "logger")}, "")
    row["tags"] = ",".join(str(t) for t in container.get("tags") or [])
    return row


def log_hparams_row(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, float], step: int) -> None:
    """Give TensorBoard's HParams tab this run's row: its hyperparameters and final metrics.

    Written at the end, as `SummaryWriter.add_hparams` does: into a run of its own (`<version>/hparams`)
    holding the values of `metrics.json` at the last step, so the row shows exactly those values and the
    run's own curves get no extra points. W&B and MLflow hold the config already (`log_hyperparams`
    at the start) and compare runs by it.
    """
    from pytorch_lightning.loggers import TensorBoardLogger
    from pytorch_lightning.utilities import rank_zero_only
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    final = {k: v for k, v in metrics.items() if math.isfinite(v)}
    boards = [lg for lg in loggers if isinstance(lg, TensorBoardLogger)]
    if not (boards and final and rank_zero_only.rank == 0):
        return
    row = hparams_row(cfg)
    for board in boards:
        with SummaryWriter(os.path.join(board.log_dir, "hparams")) as writer:
            for summary in hparams(row, final):
                writer.file_writer.add_summary(summary, step)
            for key, value in final.items():
                writer.add_scalar(key, value, step)

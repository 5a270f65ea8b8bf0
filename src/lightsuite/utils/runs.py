"""Building a run's objects from config and writing its files (`config.yaml`, `metrics.json`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from lightsuite.errors import ConfigError, user_error
from lightsuite.utils.checks import check_config
from lightsuite.utils.sweeps import keep_wandb_run_id


def build(node: DictConfig | None, name: str, **kwargs: Any) -> Any:
    """Instantiate one `_target_` node, naming the config group in any error."""
    if node is None or "_target_" not in node:
        raise ConfigError(f"`{name}` has no `_target_`: pick one with `{name}=<choice>` on the command line")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if user_error(exc) is not None:
            raise
        cause = exc.__cause__ or exc
        raise ConfigError(f"could not build `{name}` ({node._target_}): {cause}".replace("\n", " ")) from exc


def build_all(node: DictConfig | None, name: str) -> list[Any]:
    """Instantiate every entry of a group such as `callbacks` or `logger`; null entries are skipped."""
    if not node:
        return []
    return [build(sub, f"{name}.{key}") for key, sub in node.items() if sub is not None]


def prepare_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Check, show and save the config, seed everything, build the data and the task around its network.

    The config is checked against every target's signature first, so a typo costs nothing. The
    network is built from `model` with the keywords the data supplies (`net_kwargs`: for images,
    `input_shape` and `num_classes`), so one model config fits every data set. Building the
    DataModule loads nothing; that happens when the Trainer asks for batches. A dry run saves no
    config: its dir holds no run.
    """
    check_config(cfg)
    print_config(cfg)
    if not cfg.get("dry_run", False):
        save_config(cfg, cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    return build_run(cfg)


def build_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule (nothing loaded yet) and the task around the network built for its data."""
    datamodule = build(cfg.data, "data")
    net = build(cfg.model, "model", **datamodule.net_kwargs)
    return datamodule, build(cfg.task, "task", net=net)


@rank_zero_only
def report_dry_run(cfg: DictConfig, task: pl.LightningModule) -> None:
    """The one thing a dry run shows: what would train, how big it is, and where it would write."""
    params = sum(p.numel() for p in task.parameters())
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    Console(stderr=False).print(
        f"dry run ok: {type(task).__name__} around {cfg.model._target_.rsplit('.', 1)[-1]}, "
        f"{params:,} parameters ({trainable:,} trainable); run dir {cfg.paths.output_dir}",
        highlight=False,
        soft_wrap=True,
    )


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """Show the resolved config as a tree, one branch per top-level group."""
    tree = Tree("config", style="bold")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold cyan")
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    Console(stderr=False).print(tree)


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: str | os.PathLike) -> Path:
    """Write the resolved config, the record of exactly what ran."""
    path = Path(output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar tensors and numbers as plain floats, keys kept exactly as logged."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return dict(sorted(out.items()))


@rank_zero_only
def save_metrics(metrics: Mapping[str, float], output_dir: str | os.PathLike) -> Path:
    """Write `metrics.json` atomically, so a crash never leaves a half-written result.

    The file is strict JSON: non-finite values (a diverged loss) become `null`, since bare `NaN`
    breaks other languages' parsers. A failed write leaves the previous file, or none, and no temp file.
    """
    path = Path(output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
    text = json.dumps(clean, indent=2, allow_nan=False) + "\n"
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def metric_value(metrics: Mapping[str, float], name: str | None) -> float | None:
    """The value sweeps optimize; a missing name lists what was logged."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name!r} was not logged; choose one of: {', '.join(metrics)}")
    return metrics[name]


@contextmanager
def built_loggers(node: DictConfig | None) -> Iterator[list[Logger]]:
    """Build the `logger` group for one job and close it afterwards, whatever happens.

    An offline `WandbLogger` sets `WANDB_MODE` for the whole process and an unfinished W&B run
    captures the next job's logs: both are undone here, so jobs of a sweep stay independent.
    """
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

"""The files a run leaves for people and tools: `config.yaml` and `run.json` (what ran), `metrics.json`
(what came out).

Both are written once, atomically, by rank 0 only; `metrics.json` is the one place a run's result
is written (eval writes its own into its own dir).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from lightsuite.errors import ConfigError
from lightsuite.io import RUN_FILE, write_json, write_text


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: str | os.PathLike) -> Path:
    """Write the resolved config, the record of exactly what ran."""
    return write_text(Path(output_dir) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


@rank_zero_only
def save_run_file(task: object, output_dir: str | os.PathLike) -> Path:
    """Write `run.json`: the task's class and the metrics a report of it should draw (`report_metrics`).

    The report reads run dirs only, never the code that wrote them: what a task class says about
    itself is written down here, beside `config.yaml`.
    """
    cls = type(task)
    metrics = list(getattr(cls, "report_metrics", ()))
    return write_json(
        Path(output_dir) / RUN_FILE,
        {"task": f"{cls.__module__}.{cls.__qualname__}", "report_metrics": metrics},
    )


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
    """Write `metrics.json`, so a crash never leaves a half-written result.

    The file is strict JSON: non-finite values (a diverged loss) become `null`, since bare `NaN`
    breaks other languages' parsers. A failed write leaves the previous file, or none, and no temp file.
    """
    clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
    return write_json(Path(output_dir) / "metrics.json", clean)


def metric_value(metrics: Mapping[str, float], name: str | None) -> float | None:
    """The value sweeps optimize; a missing name lists what was logged."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name!r} was not logged; choose one of: {', '.join(metrics)}")
    return metrics[name]

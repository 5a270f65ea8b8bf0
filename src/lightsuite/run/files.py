"""The files a run leaves for people and tools: `config.yaml` and `run.json` (what ran, from which code,
where: `run/provenance.py`), `metrics.json` (what came out).

Both are written once, atomically, by rank 0 only; `metrics.json` is the one place a run's result
is written (eval writes its own into its own dir).
"""

from __future__ import annotations

import json
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
from lightsuite.run import provenance


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: str | os.PathLike) -> Path:
    """Write the resolved config, the record of exactly what ran."""
    return write_text(Path(output_dir) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


@rank_zero_only
def save_run_file(
    task: object,
    output_dir: str | os.PathLike,
    package_dir: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
) -> Path:
    """Write `run.json`: the task's class, the metrics a report of it should draw (`report_metrics`), its
    parameter count and the provenance of this process (and of those that ran in this run dir before:
    a resume, a requeue).

    The report reads run dirs only, never the code that wrote them: what a task class says about
    itself is written down here, beside `config.yaml`. `package_dir` and `cwd` say where the code and
    the working dir are (by default lightsuite's own source and the process's; see `provenance.collect`).
    """
    cls = type(task)
    metrics = list(getattr(cls, "report_metrics", ()))
    return write_json(
        Path(output_dir) / RUN_FILE,
        {
            "task": f"{cls.__module__}.{cls.__qualname__}",
            "report_metrics": metrics,
            "parameters": parameter_count(task),
            provenance.PROVENANCE_KEY: save_provenance(output_dir, package_dir, cwd),
        },
    )


def parameter_count(task: object) -> int | None:
    """The task's parameters, counted as a dry run counts them; None before lazy layers have a shape."""
    if not isinstance(task, torch.nn.Module):
        return None
    params = list(task.parameters())
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in params):
        return None
    return sum(p.numel() for p in params)


def save_provenance(
    output_dir: str | os.PathLike,
    package_dir: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """This process's provenance continuing the run dir's earlier segments; writes the diff files.

    An earlier segment's `git.diff` is kept under its segment's number (`git.1.diff`) before this
    one's replaces it: code edited between a kill and its requeue stays on record.
    """
    out = Path(output_dir)
    record, diffs = provenance.collect(package_dir, cwd)
    latest, renames = provenance.continued(record, read_run_file(out).get(provenance.PROVENANCE_KEY))
    for old, new in renames.items():
        if (out / old).is_file():
            (out / old).replace(out / new)
    for name, text in diffs.items():
        write_text(out / name, text)
    return latest


def read_run_file(output_dir: str | os.PathLike) -> dict[str, Any]:
    """A run dir's `run.json` (empty when absent or unreadable: a run dir older than it, a dry run)."""
    try:
        data = json.loads((Path(output_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_provenance(output_dir: str | os.PathLike, trainer: Any = None) -> dict[str, Any] | None:
    """This run's provenance from its `run.json`, with the trainer's devices (rank 0 writes them back).

    The devices are known only once the trainer has set up its accelerator: CUDA is not touched before.
    """
    run = read_run_file(output_dir)
    record = run.get(provenance.PROVENANCE_KEY)
    if not isinstance(record, dict):
        return None
    if trainer is not None:
        record = {**record, "devices": provenance.devices(trainer)}
        if trainer.is_global_zero:
            write_json(Path(output_dir) / RUN_FILE, {**run, provenance.PROVENANCE_KEY: record})
    return record


@rank_zero_only
def save_run_end(output_dir: str | os.PathLike) -> None:
    """Write the end time into `run.json` (its latest segment too): the run got to its `metrics.json`."""
    run = read_run_file(output_dir)
    record = run.get(provenance.PROVENANCE_KEY)
    if isinstance(record, dict):
        write_json(Path(output_dir) / RUN_FILE, {**run, provenance.PROVENANCE_KEY: provenance.ended(record)})


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

"""A run's logged history read back, one series per metric: the CSV logger's `csv/metrics.csv` (every
logged step) and the suite's own `history.jsonl` (one line per epoch, kept whatever the loggers:
`run/history.py`). The report imports nothing of `run/`, so the file's name is repeated here.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HISTORY_FILE = "history.jsonl"


@dataclass
class Point:
    """One logged value: the optimizer step, the epoch when the metric was logged with one, the value."""

    step: int
    epoch: int | None
    value: float


def read_history(file: Path) -> dict[str, list[Point]]:
    """The CSV logger's rows as one series per metric, ordered by step (the last value of a step wins)."""
    if not file.is_file():
        return {}
    by_metric: dict[str, dict[tuple[int, int | None], Point]] = {}
    try:
        with file.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    for row in rows:
        step = _int(row.get("step"))
        if step is None:
            continue
        epoch = _int(row.get("epoch"))
        for key, raw in row.items():
            if key in ("step", "epoch") or key is None or raw in (None, ""):
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            by_metric.setdefault(key, {})[(step, epoch)] = Point(step, epoch, value)
    return {k: sorted(v.values(), key=lambda p: (p.step, p.epoch or 0)) for k, v in by_metric.items()}


def read_epoch_history(file: Path) -> dict[str, list[Point]]:
    """`history.jsonl` (one line per epoch) as one series per metric; a line cut short is skipped,
    a null (a non-finite value) read as NaN."""
    try:
        lines = file.read_text().splitlines() if file.is_file() else []
    except (OSError, UnicodeDecodeError):
        return {}
    by_metric: dict[str, dict[int, Point]] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        epoch, step = (row.get("epoch"), row.get("step")) if isinstance(row, dict) else (None, None)
        if _epoch(epoch) is None or not isinstance(step, int):
            continue
        for key, value in row.items():
            if key in ("epoch", "step") or not (value is None or _is_number(value)):
                continue
            by_metric.setdefault(key, {})[epoch] = Point(step, epoch, math.nan if value is None else value)
    return {k: [v[e] for e in sorted(v)] for k, v in by_metric.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _int(raw: str | None) -> int | None:
    try:
        return int(float(raw)) if raw not in (None, "") else None
    except ValueError:
        return None

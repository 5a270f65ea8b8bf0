"""Atomic writes: a file someone reads is either the old one or the whole new one, never half of either.

The files a run, a sweep or a task leaves for others to read (`metrics.json`, `config.yaml`, a sweep's
summary, a sample grid, a cached FID classifier) go through `replacing`: the content is written
to a temp file beside the target and renamed over it, so a crash, a kill or a requeue mid-write
leaves the previous file (or none) and no temp file. The temp name is per writer (host and pid):
the jobs of a SLURM array and their launcher may write the same summary at once. (Two writers keep
their own scheme: a resumed run's CSV log (`run/resume.py`), kept across a kill on purpose, and
the report, which swaps in a whole folder.)

Also the names of the files a run and a sweep leave on disk, shared by their writers and the report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# a job's own record in its run dir, which the sweep summary and the report are rebuilt from
STATUS_FILE = "job_status.json"
# a sweep's summary (`.json` and `.csv`) in its sweep dir
SUMMARY = "sweep_summary"
# what ran, for readers that must not import it (the report): the task's class and its report metrics
RUN_FILE = "run.json"


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text (the header first), `\n` line ends on every platform: what the tables write."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write strict JSON (no bare NaN, which other languages' parsers refuse), indented, atomically."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` atomically: a half-written weights file would load as a corrupt cache."""
    import torch

    with replacing(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_npy(array: Any, path: str | os.PathLike) -> Path:
    """`numpy.save` atomically (through a file object: `np.save` appends `.npy` to other names)."""
    import numpy as np

    with replacing(path) as tmp, tmp.open("wb") as f:
        np.save(f, array)
    return Path(path)


def save_png(array: Any, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) uint8 array as a PNG atomically."""
    from PIL import Image

    with replacing(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)

"""A resumed run's W&B offline folders, trimmed so that `wandb sync` uploads each logged step once.

Each process of an offline run writes its own `wandb/offline-run-<time>-<id>/run-<id>.wandb`, all
with the run's id (`run/loggers.py`), so a run killed and resumed leaves one folder per segment.
What wandb 0.31 does with them (`wandb sync`, implemented in its Go core `wandb-core`):

- the files of one run (entity/project/id) are synced one after another, in the order of their run
  records' start times (`wandb sync --help`, `-n`; `runsync.(*RunSyncOperation).initAndPlan`
  sorts them); each asks the server for the run's state (`RunResumeStatus`: the run records say
  `resume`) and the later ones resume the run the first created, appending its history lines;
- the records go to the sender without the handler that numbers steps while a run is live:
  `Sender.sendHistory` renumbers each history row with a `HistoryStepTracker`, whose running step
  starts at the run's `StartingStep` (one past the server's last `_step` on a resume, kept in the
  `.wandb.syncstate` beside the file) and a row whose `_step` is behind it gets the running step
  ("historystep: _step behind running step, renumbering"). Nothing is dropped: the offline segment
  after a resume counts `_step` from 0 again (an offline run knows no server state) and its rows
  are appended after the earlier ones' as the next steps.

So the killed segment's rows logged after the checkpoint it resumes from (the rest of the cut
epoch, or the step after a mid-epoch save) would reach the run twice, once from each segment.
`trim_offline_runs` drops them from the earlier segments' files before the resumed segment logs
anything, as the CSV log is rewound (`run/resume.py`): the history rows after the last row the
checkpoint covers, and the summary updates written with them. Every other record (console output,
system metrics, files, the exit) stays. The rewrite is atomic and keeps W&B's file format: the
header, then LevelDB-log records in 32 KiB blocks, each chunk framed by a CRC-32 (IEEE, over the
chunk type and data), a little-endian length and a type (full, or first/middle/last of a record
that crosses blocks). A record cut off by a kill, and anything after it, is left out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lightsuite.io import replacing

if TYPE_CHECKING:
    from wandb.proto.wandb_internal_pb2 import HistoryRecord

HEADER = b":W&B\xe1\xbe\x00"  # ident, magic 0xBEE1 (little-endian), version 0
BLOCK = 32 * 1024
CHUNK = 7  # crc32 (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_payloads(path: Path) -> list[bytes]:
    """The serialized records of a `.wandb` file, up to the first that is incomplete or corrupt."""
    data = path.read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path} is not a W&B offline run file")
    records, pending, pos = [], None, len(HEADER)
    while pos + CHUNK <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK:  # a block's zero-padded trailer
            pos += room
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + CHUNK : pos + CHUNK + length]
        if kind == 0 or len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            break
        pos += CHUNK + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif pending is not None and kind in (MIDDLE, LAST):
            pending += chunk
            if kind == LAST:
                records.append(pending)
                pending = None
        else:
            break  # a continuation without its start
    return records


def _framed(payloads: Iterable[bytes]) -> Iterator[bytes]:
    """The file's bytes after its header: each record in chunks that never cross a block."""
    pos = len(HEADER)
    for payload in payloads:
        first = True
        while True:
            room = BLOCK - pos % BLOCK
            if room < CHUNK:
                yield b"\0" * room
                pos += room
                room = BLOCK
            part, payload = payload[: room - CHUNK], payload[room - CHUNK :]
            kind = (FULL if not payload else FIRST) if first else (LAST if not payload else MIDDLE)
            crc = zlib.crc32(part, zlib.crc32(bytes([kind])))
            yield struct.pack("<IHB", crc, len(part), kind) + part
            pos += CHUNK + len(part)
            first = False
            if not payload:
                break


def write_payloads(path: Path, payloads: Iterable[bytes]) -> None:
    """Write serialized records as a `.wandb` file, atomically."""
    with replacing(path) as tmp, tmp.open("wb") as f:
        f.write(HEADER)
        for piece in _framed(payloads):
            f.write(piece)


def trim_history(path: Path, covered: Callable[[HistoryRecord], bool]) -> bool:
    """Drop the history rows after the last one `covered` accepts, and the summary updates written
    with them (after that row). Returns whether the file changed."""
    from wandb.proto.wandb_internal_pb2 import Record

    payloads = read_payloads(path)
    kinds, last_kept = [], -1
    for i, payload in enumerate(payloads):
        record = Record()
        record.ParseFromString(payload)
        kinds.append(record.WhichOneof("record_type"))
        if kinds[-1] == "history" and covered(record.history):
            last_kept = i
    kept = [p for i, p in enumerate(payloads) if i <= last_kept or kinds[i] not in ("history", "summary")]
    if len(kept) == len(payloads) and path.stat().st_size == len(HEADER) + sum(map(len, _framed(kept))):
        return False
    write_payloads(path, kept)
    return True


def trim_offline_runs(
    wandb_dir: Path, run_id: str, covered: Callable[[HistoryRecord], bool], live: Path | None = None
) -> list[Path]:
    """Trim every offline segment of run `run_id` under `wandb_dir` but the `live` one (the folder
    the resumed segment writes to, if it has started). Returns the files that changed."""
    changed = []
    for path in sorted(wandb_dir.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        if live is not None and path.parent.resolve() == live.resolve():
            continue
        if trim_history(path, covered):
            changed.append(path)
    return changed

"""Read a W&B offline run file (`run-<id>.wandb`) back into its protobuf records.

The file is W&B's header (":W&B", 2 magic bytes, a version byte) followed by LevelDB-log framed
records: 32 KiB blocks, each chunk a 7-byte header (crc32c, little-endian length, type) and data;
types FULL=1, FIRST=2, MIDDLE=3, LAST=4 stitch records that cross blocks.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # block trailer padding
            pos += room
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if (kind == 0 and length == 0) or len(chunk) < length:  # the end, or a chunk being written
            break
        # the checksum W&B's writer frames each chunk with: CRC-32 (IEEE) over its type and data
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad chunk at {pos}"
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records

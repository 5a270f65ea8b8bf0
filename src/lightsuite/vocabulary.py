"""The fixed character vocabulary: tab, newline, printable ASCII and one slot for anything else.

Shared by the chars DataModule (text into ids) and the character language model (a prompt into ids,
samples back into text), which must agree on it and know nothing of each other.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CHARS = "\t\n" + "".join(chr(c) for c in range(32, 127))
UNKNOWN = len(CHARS)  # every other character
VOCAB_SIZE = len(CHARS) + 1
_LOOKUP = np.full(128, UNKNOWN, dtype=np.int64)
_LOOKUP[[ord(c) for c in CHARS]] = np.arange(len(CHARS))


def encode(text: str) -> Tensor:
    """Character ids (int64) of `text`."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.where(codes < 128, _LOOKUP[np.minimum(codes, 127)], UNKNOWN)
    return torch.from_numpy(ids)


def decode(ids: Tensor) -> str:
    """The text of character ids; an unknown id reads as U+FFFD."""
    return "".join(CHARS[i] if i < UNKNOWN else "\ufffd" for i in ids.tolist())

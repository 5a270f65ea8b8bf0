"""Characters of a text for a language model; offline default: this Python's standard library sources.

The vocabulary is fixed (`lightsuite.vocabulary`), so the network's size is known without reading
the text (`net_kwargs` needs no data), and every checkpoint samples with the alphabet it was trained on.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from torch import Tensor
from torch.utils.data import DataLoader

from lightsuite.data.batches import ResidentDataModule, loader
from lightsuite.errors import ConfigError, DataNotFoundError
from lightsuite.vocabulary import VOCAB_SIZE, encode


def stdlib_sources(max_chars: int) -> str:
    """The `.py` files of the standard library in sorted path order, up to `max_chars` characters."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "dist-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise DataNotFoundError(f"no Python sources under {root}; pass a text file with data.path=...")
    return "".join(parts)[:max_chars]


class CharsDataModule(ResidentDataModule):
    """Non-overlapping chunks of `seq_len + 1` characters; the text's last fractions validate and test.

    The chunks are tensors on the training device (`ResidentDataModule`, data/batches.py).
    """

    def __init__(
        self,
        path: str | None = None,
        max_chars: int = 1_000_000,
        seq_len: int = 128,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        batches_per_step: int = 1,
        device_resident: bool = True,
    ) -> None:
        super().__init__(device_resident)
        for key, value in (
            ("max_chars", max_chars),
            ("seq_len", seq_len),
            ("batch_size", batch_size),
            ("batches_per_step", batches_per_step),
        ):
            if value < 1:
                raise ConfigError(f"data.{key}={value} must be >= 1")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 0.5:
                raise ConfigError(f"data.{key}={value} must be in (0, 0.5)")
        self.path = Path(path).expanduser() if path else None
        self.max_chars, self.seq_len = max_chars, seq_len
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.batches_per_step = batches_per_step
        self.chunks: dict[str, Tensor] = {}

    @property
    def net_kwargs(self) -> dict[str, int | bool]:
        """Fixed by the vocabulary: no text is read."""
        return {"vocab_size": VOCAB_SIZE, "output_size": VOCAB_SIZE, "per_step": True}

    def load_text(self) -> str:
        if self.path is None:
            return stdlib_sources(self.max_chars)
        if not self.path.is_file():
            raise DataNotFoundError(
                f"data.path={self.path}: no such file; pass a text file (or data.path=null)"
            )
        return self.path.read_text(encoding="utf-8", errors="replace")[: self.max_chars]

    def setup(self, stage: str | None = None) -> None:
        if not self.chunks:
            self.chunks = self.cut_chunks()
        # on every call: a later fit or test may run on another device
        self.chunks = self.place(self.chunks)

    def cut_chunks(self) -> dict[str, Tensor]:
        """Each split's chunks as host tensors (`setup` places them): the text read and encoded."""
        chunks = {}
        ids = encode(self.load_text())
        n = len(ids)
        n_test, n_val = int(self.test_fraction * n), int(self.val_fraction * n)
        bounds = {
            "train": (0, n - n_val - n_test),
            "val": (n - n_val - n_test, n - n_test),
            "test": (n - n_test, n),
        }
        size = self.seq_len + 1
        for stage_name, (start, end) in bounds.items():
            count = (end - start) // size
            if count < 1:
                raise ConfigError(
                    f"data: the text has {n} characters, too few for one {stage_name} sequence of "
                    f"data.seq_len={self.seq_len} + 1; use a longer text or a smaller data.seq_len"
                )
            chunks[stage_name] = ids[start : start + count * size].view(count, size)
        return chunks

    def train_dataloader(self) -> DataLoader:
        return loader(
            {"seq": self.chunks["train"]},
            self.batch_size,
            shuffle=True,
            group=self.batches_per_step,
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader:
        return loader({"seq": self.chunks["val"]}, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return loader({"seq": self.chunks["test"]}, self.eval_batch_size)

"""The character data: the stdlib corpus, contiguous held-out text (vocabulary: tests/test_vocabulary.py)."""

from __future__ import annotations

import pytest
import torch

from lightsuite.data.chars import CharsDataModule
from lightsuite.errors import ConfigError, DataNotFoundError
from lightsuite.vocabulary import decode


def test_net_kwargs_read_no_text():
    dm = CharsDataModule(path="/nonexistent.txt")
    assert dm.net_kwargs == {"vocab_size": 98, "output_size": 98, "per_step": True}


def test_stdlib_corpus_split_into_contiguous_parts():
    dm = CharsDataModule(max_chars=30_000, seq_len=31, val_fraction=0.1, test_fraction=0.1)
    dm.setup()
    train, val, test = (dm.chunks[s] for s in ("train", "val", "test"))
    assert train.shape[1] == val.shape[1] == 32
    text = decode(torch.cat([train.flatten(), val.flatten(), test.flatten()]))
    assert "def " in text and "import" in text
    assert 0.09 < val.numel() / 30_000 <= 0.1 and 0.09 < test.numel() / 30_000 <= 0.1


def test_text_file_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data.path="):
        CharsDataModule(path=str(tmp_path / "none.txt")).setup()
    short = tmp_path / "short.txt"
    short.write_text("x" * 100)
    with pytest.raises(ConfigError, match=r"data.seq_len=128"):
        CharsDataModule(path=str(short)).setup()

"""CharLMTask: bits per character is the next character's cross-entropy in bits; the model learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST

from lightsuite.data.chars import CharsDataModule
from lightsuite.models.rnn import RecurrentNet
from lightsuite.tasks.char_lm import CharLMTask
from lightsuite.train import train
from lightsuite.vocabulary import CHARS, VOCAB_SIZE

LINES = ["the cat sat on the mat.\n", "a dog ran in the park!\n", "def f(x): return x + 1\n", "import this\n"]


def repetitive_text(lines: int, seed: int = 0) -> str:
    """Four fixed lines in a seeded random order: about 2 bits of news per line, ~0.1 bit per character."""
    rng = np.random.default_rng(seed)
    return "".join(LINES[i] for i in rng.integers(0, len(LINES), lines))


def test_bits_per_character_is_the_mean_next_character_cross_entropy_over_ln_2(tmp_path):
    """Weighted by characters over uneven batches; each sequence predicts its 2nd..last character."""
    path = tmp_path / "text.txt"
    path.write_text(repetitive_text(200))
    dm = CharsDataModule(path=str(path), seq_len=10, val_fraction=0.1, test_fraction=0.1, eval_batch_size=5)
    torch.manual_seed(0)
    net = RecurrentNet("lstm", output_size=VOCAB_SIZE, vocab_size=VOCAB_SIZE, per_step=True, hidden_size=16)
    task = CharLMTask(net, optimizer=torch.optim.Adam)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    got = {**trainer.validate(task, datamodule=dm, verbose=False)[0]}
    got.update(trainer.test(task, datamodule=dm, verbose=False)[0])
    text = path.read_text()
    for stage in ("val", "test"):
        chunks = dm.chunks[stage]
        assert len(chunks) % 5 != 0, "the last batch should be short"
        # the held-out chunks are the text itself, 11 characters each
        first = len(text) - int(0.1 * len(text)) * (2 if stage == "val" else 1)
        assert "".join(CHARS[i] for i in chunks[0].tolist()) == text[first : first + 11]
        with torch.no_grad():
            logits = net(chunks[:, :-1])[0].double().numpy()
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nxt = chunks[:, 1:].numpy()
        nats = -np.take_along_axis(log_probs, nxt[..., None], axis=-1).mean()
        assert got[f"{stage}/bpc"] == pytest.approx(nats / math.log(2), rel=1e-5), stage


def test_character_model_learns_a_repetitive_text_far_below_a_uniform_guess(make_cfg, tmp_path):
    """Test bpc under 1.0 against log2(98) = 6.6 (seeds 0-4 measured 0.25-0.31)."""
    path = tmp_path / "text.txt"
    path.write_text(repetitive_text(1000))
    overrides = [
        *FAST,
        "experiment=chars_lstm",
        f"data.path={path}",
        "data.seq_len=32",
        "data.batch_size=32",
        "data.batches_per_step=8",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.embedding_dim=16",
        "task.optimizer.lr=1e-2",
        "trainer.max_epochs=10",
        "trainer.val_check_interval=1.0",
        "seed=0",
    ]
    metrics = train(make_cfg("train", overrides))
    assert metrics["test/bpc"] < 1.0 < math.log2(VOCAB_SIZE)

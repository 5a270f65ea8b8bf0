"""SequenceRegressionTask on the adding problem: MSE over a whole split, and an LSTM that learns the lag."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST

from lightsuite.data.adding import AddingDataModule
from lightsuite.models.rnn import RecurrentNet
from lightsuite.tasks.sequence_regression import SequenceRegressionTask
from lightsuite.train import train


def test_mse_is_over_every_sequence_of_the_split():
    """Uneven batches (50 sequences in batches of 8): the mean over sequences, not over batches."""
    dm = AddingDataModule(seq_len=12, num_train=16, num_val=50, num_test=50, eval_batch_size=8, seed=1)
    torch.manual_seed(0)
    net = RecurrentNet("lstm", output_size=1, input_size=2, hidden_size=8)
    task = SequenceRegressionTask(net, optimizer=torch.optim.Adam)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    got = trainer.test(task, datamodule=dm, verbose=False)[0]["test/mse"]
    x, y = dm.sets["test"]["x"], dm.sets["test"]["y"]
    with torch.no_grad():
        pred = net(x)[0].double().numpy()
    assert got == pytest.approx(((pred - y.double().numpy()) ** 2).mean(), rel=1e-5)


def test_lstm_learns_the_adding_problem_at_short_T(make_cfg):
    """T = 10: test MSE under 0.05 against the trivial 1/6 of always predicting 1 (seeds 0-5: 0.004-0.006)."""
    overrides = [
        *FAST,
        "experiment=adding_lstm",
        "data.seq_len=10",
        "data.num_train=2048",
        "data.num_val=256",
        "data.num_test=512",
        "data.batch_size=32",
        "data.batches_per_step=16",
        "model.hidden_size=32",
        "task.optimizer.lr=1e-2",
        "trainer.max_epochs=5",
        "trainer.val_check_interval=1.0",
        "seed=0",
    ]
    metrics = train(make_cfg("train", overrides))
    assert metrics["test/mse"] < 0.05 < 1 / 6

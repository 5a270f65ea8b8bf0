"""The shared sequence-task loop: grouping batches per Lightning step leaves the updates unchanged."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST

from lightsuite.train import train

ADDING = [
    *FAST,
    "experiment=adding_lstm",
    "model.hidden_size=8",
    "data.seq_len=12",
    "data.num_train=320",
    "data.num_val=32",
    "data.num_test=32",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "test=false",
    "task.optimizer.weight_decay=0.01",
    "task.gradient_clip_val=0.05",  # small enough to clip
]


def test_batches_per_step_gives_the_same_weights(make_cfg, tmp_path):
    """With a cosine schedule, so that the schedule's length must count optimizer steps too."""
    weights = {}
    for group in (1, 3):
        run = tmp_path / f"k{group}"
        cfg = make_cfg("train", [*ADDING, f"data.batches_per_step={group}", "task/scheduler=cosine"], run)
        metrics = train(cfg)
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        weights[group] = (ckpt["state_dict"], ckpt["global_step"], metrics["train/loss_epoch"])
    (w1, steps1, loss1), (w3, steps3, loss3) = weights[1], weights[3]
    assert steps1 == steps3 == 40  # optimizer steps, whatever the grouping
    assert loss1 == pytest.approx(loss3, rel=1e-6)
    for key, value in w1.items():
        torch.testing.assert_close(w3[key], value, rtol=1e-6, atol=1e-7)


def test_backward_hooks_still_run_when_a_callback_has_them(make_cfg, tmp_path):
    """The plain `loss.backward()` shortcut is taken only when no callback could notice it."""
    import pytorch_lightning as pl

    from lightsuite.run.build import build

    class CountBackward(pl.Callback):
        calls = 0

        def on_after_backward(self, trainer, pl_module) -> None:
            CountBackward.calls += 1

    cfg = make_cfg("train", [*ADDING, "data.batches_per_step=3", "trainer.max_epochs=1"])
    datamodule = build(cfg.data, "data")
    task = build(cfg.task, "task", net=build(cfg.model, "model", **datamodule.net_kwargs))
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[CountBackward()],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    assert CountBackward.calls == trainer.global_step == 20

"""The shared sequence-task loop: grouping batches per Lightning step leaves the updates unchanged."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST
from pytorch_lightning.callbacks import LambdaCallback

from lightsuite.run.build import build
from lightsuite.tasks.sequence_regression import SequenceRegressionTask
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


class CountManualBackward(SequenceRegressionTask):
    """Counts the backward passes that went through Lightning's `manual_backward`."""

    manual_backwards = 0

    def manual_backward(self, loss, *args, **kwargs) -> None:
        self.manual_backwards += 1
        super().manual_backward(loss, *args, **kwargs)


def _fit_groups(make_cfg, *callbacks) -> CountManualBackward:
    """One epoch of 20 batches in groups of 3 (the last of 2), as `train(cfg)` builds the task."""
    cfg = make_cfg("train", [*ADDING, "data.batches_per_step=3", "trainer.max_epochs=1"])
    datamodule = build(cfg.data, "data")
    built = build(cfg.task, "task", net=build(cfg.model, "model", **datamodule.net_kwargs))
    task = CountManualBackward(built.net, built.optimizer_factory, None, built.gradient_clip_val)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    return task


def test_each_backward_of_a_group_reaches_a_callback_set_on_the_instance(make_cfg):
    """A hook set on the instance (as `LambdaCallback` does) counts as much as one in a class."""
    per_step, calls = [], [0]

    def after_backward(trainer, pl_module) -> None:
        calls[0] += 1

    def batch_end(*_) -> None:
        per_step.append(calls[0])
        calls[0] = 0

    hooks = LambdaCallback(on_after_backward=after_backward, on_train_batch_end=batch_end)
    task = _fit_groups(make_cfg, hooks)
    assert per_step == [3, 3, 3, 3, 3, 3, 2]
    assert task.manual_backwards == 20


def test_without_backward_hooks_the_plain_backward_is_taken(make_cfg):
    assert _fit_groups(make_cfg).manual_backwards == 0


class CountOptimizerSteps(pl.Callback):
    """A callback with an optimizer-step hook: the updates must then go through Lightning's dispatch."""

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls += 1


def test_the_raw_optimizer_step_gives_the_dispatched_steps_weights_and_count(make_cfg):
    """Where nothing could notice, each update skips `LightningOptimizer.step` (the raw optimizer's step
    between Lightning's two step counters): the same weights, clipped alike, and the same global_step."""
    tasks, counter = {}, CountOptimizerSteps()
    for name, callbacks in (("raw", ()), ("dispatched", (counter,))):
        pl.seed_everything(4)
        tasks[name] = _fit_groups(make_cfg, *callbacks)
    raw, dispatched = tasks["raw"], tasks["dispatched"]
    assert raw._plain_step and not dispatched._plain_step
    assert raw.trainer.global_step == dispatched.trainer.global_step == counter.calls == 20
    # the progress a checkpoint keeps (ready and completed steps), as Lightning counts it
    progress = [
        t.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.state_dict()
        for t in (raw, dispatched)
    ]
    assert progress[0] == progress[1] and progress[0]["total"]["ready"] == 20
    want = dispatched.net.state_dict()
    for key, value in raw.net.state_dict().items():
        torch.testing.assert_close(value, want[key], rtol=0, atol=0)

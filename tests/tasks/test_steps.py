"""The shared training-loop helpers: when hooks may be skipped, divergence messages, logging cadence."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LambdaCallback
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightsuite.errors import DivergedError
from lightsuite.tasks.steps import (
    BACKWARD_HOOKS,
    OPTIMIZER_STEP_HOOKS,
    hooks_can_be_skipped,
    logs_this_step,
    raise_if_diverged,
)

LEAN = BACKWARD_HOOKS + OPTIMIZER_STEP_HOOKS  # what the GAN's lean rounds bypass


class Probe(pl.LightningModule):
    """Records the helper's decision where the tasks make it: at fit start, on the real Trainer."""

    def __init__(self, hooks: tuple[str, ...]) -> None:
        super().__init__()
        self.layer, self.hooks, self.decision = nn.Linear(2, 1), hooks, None

    def on_fit_start(self) -> None:
        self.decision = hooks_can_be_skipped(self, self.hooks)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class BackwardProbe(Probe):
    def backward(self, loss, *args, **kwargs) -> None:
        loss.backward(*args, **kwargs)


class AfterBackwardProbe(Probe):
    def on_after_backward(self) -> None:
        pass


class AfterBackward(pl.Callback):
    def on_after_backward(self, trainer, pl_module) -> None:
        pass


class BeforeOptimizerStep(pl.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        pass


class EpochEnd(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass


class MySingleDevice(SingleDeviceStrategy):
    """A strategy of one's own may act around backward and step: not Lightning's plain one."""


def decision(hooks=LEAN, probe=Probe, **trainer_kwargs) -> bool:
    module = probe(hooks)
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(module, DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
    return module.decision


@pytest.mark.parametrize(
    ("hooks", "probe", "trainer_kwargs", "expected"),
    [
        (LEAN, Probe, {}, True),
        (LEAN, Probe, {"callbacks": [EpochEnd()]}, True),  # a callback that cannot see the shortcut
        (BACKWARD_HOOKS, Probe, {"callbacks": [BeforeOptimizerStep()]}, True),  # not a hook it skips
        (LEAN, Probe, {"callbacks": [BeforeOptimizerStep()]}, False),
        (BACKWARD_HOOKS, Probe, {"callbacks": [AfterBackward()]}, False),
        (BACKWARD_HOOKS, Probe, {"callbacks": [LambdaCallback(on_before_backward=print)]}, False),
        (BACKWARD_HOOKS, AfterBackwardProbe, {}, False),
        (BACKWARD_HOOKS, BackwardProbe, {}, False),
        (LEAN, Probe, {"precision": "bf16-mixed"}, False),
        (LEAN, Probe, {"precision": "64-true"}, False),
        (LEAN, Probe, {"profiler": "simple"}, False),
        (LEAN, Probe, {"strategy": MySingleDevice(device=torch.device("cpu"))}, False),
    ],
    ids=[
        "plain",
        "unrelated_callback",
        "step_hook_kept_by_a_backward_only_shortcut",
        "step_hook_skipped",
        "callback_after_backward",
        "lambda_callback_before_backward",
        "module_after_backward",
        "module_backward",
        "bf16",
        "fp64",
        "profiler",
        "own_strategy",
    ],
)
def test_hooks_are_skipped_only_where_nothing_would_notice(hooks, probe, trainer_kwargs, expected):
    assert decision(hooks, probe, **trainer_kwargs) is expected


def _message(*args) -> str:
    with pytest.raises(DivergedError) as info:
        raise_if_diverged(*args)
    return str(info.value)


def test_each_familys_divergence_message_names_its_own_keys():
    """The messages as each task wrote them before the check was shared, spelled out by hand."""
    nan, inf = torch.tensor(float("nan")), torch.tensor(float("inf"))
    classification = _message(
        {"train/loss": nan}, 3, {"task.optimizer.lr": 0.1}, "trainer.gradient_clip_val=1.0"
    )
    assert classification == (
        "train/loss became nan in epoch 3: lower the learning rate (task.optimizer.lr, now 0.1) "
        "or clip gradients (trainer.gradient_clip_val=1.0)"
    )
    sequence = _message(
        {"train/loss": inf}, 0, {"task.optimizer.lr": 0.00123456}, "task.gradient_clip_val=1.0"
    )
    assert sequence == (
        "train/loss became inf in epoch 0: lower the learning rate (task.optimizer.lr, now 0.00123) "
        "or clip gradients (task.gradient_clip_val=1.0)"
    )
    lrs = {"task.g_optimizer.lr": 1e30, "task.d_optimizer.lr": 2e-4}
    gan = _message({"train/d_loss": 0.5, "train/g_loss": float("nan")}, 7, lrs, "task.grad_clip=1.0")
    assert gan == (
        "train/d_loss=0.5 train/g_loss=nan in epoch 7: lower the learning rates "
        "(task.g_optimizer.lr, now 1e+30; task.d_optimizer.lr, now 0.0002) "
        "or clip gradients (task.grad_clip=1.0)"
    )


def test_finite_losses_pass():
    lrs = {"task.optimizer.lr": 0.1}
    assert raise_if_diverged({"train/loss": torch.tensor(1e30), "b": -3.0}, 0, lrs, "x") is None


def test_logs_this_step_every_n_steps():
    trainer = pl.Trainer(log_every_n_steps=5, logger=False, enable_progress_bar=False)
    assert [step for step in range(12) if logs_this_step(trainer, step)] == [4, 9]
    assert logs_this_step(pl.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False), 0)

"""A callback that sends its own process a signal at a given training step: a preemption on cue."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl


class SignalAt(pl.Callback):
    """Sends `signum` to this process when training step `step` (1-based global step) has run."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)

"""A character language model: predict each next character; bits per character; sample text."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric

from lightsuite.errors import ConfigError
from lightsuite.tasks.sequence import SequenceTask
from lightsuite.vocabulary import decode, encode


class CharLMTask(SequenceTask):
    """Cross-entropy on every next character; `val/bpc`, `test/bpc` = mean cross-entropy / ln 2."""

    report_metrics: tuple[str, ...] = ("val/bpc", "train/loss")

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, gradient_clip_val)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.val_bpc, self.test_bpc = MeanMetric(), MeanMetric()

    def _nats(self, batch: dict[str, Tensor]) -> Tensor:
        seq = batch["seq"]
        logits = self.net(seq[:, :-1])[0]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self._nats(batch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # weighted by characters, so a short last batch counts for what it holds
        self.val_bpc.update(self._nats(batch) / math.log(2), weight=batch["seq"][:, 1:].numel())

    def on_validation_epoch_end(self) -> None:
        self.log("val/bpc", self.val_bpc.compute(), prog_bar=True)
        self.val_bpc.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_bpc.update(self._nats(batch) / math.log(2), weight=batch["seq"][:, 1:].numel())

    def on_test_epoch_end(self) -> None:
        self.log("test/bpc", self.test_bpc.compute())
        self.test_bpc.reset()

    def generate(self, prompt: str, length: int, temperature: float) -> str:
        """`length` characters drawn one at a time after `prompt`, each fed back as the next input."""
        ids = encode(prompt or "\n").to(self.device).unsqueeze(0)
        logits, state = self.net(ids)
        out = []
        for _ in range(length):
            probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1)
            out.append(nxt)
            logits, state = self.net(nxt, state)
        return decode(torch.cat(out, dim=1)[0]) if out else ""

    def sample_to(self, options: DictConfig) -> str:
        """Print `prompt` and `length` sampled characters at `temperature`; `lightsuite-sample` calls this."""
        length, temperature = int(options.length), float(options.temperature)
        if length < 0:
            raise ConfigError(f"length={length} must be >= 0 (characters to generate)")
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0 (1 = the model's own distribution)")
        prompt = str(options.get("prompt") or "")
        text = self.generate(prompt, length, temperature)
        sys.stdout.write(prompt + text + "\n")
        return (
            f"sampled {len(text)} characters after a {len(prompt)}-character prompt "
            f"at temperature {temperature}"
        )

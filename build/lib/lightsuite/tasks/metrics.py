"""Metrics that torchmetrics lacks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


class TopKAccuracy(Metric):
    """Top-1, top-5, … accuracy from a single `topk` per batch, for several k at once.

    Equal to torchmetrics' `MulticlassAccuracy(top_k=k, average="micro")` for each k, but that
    class runs its stat-scores machinery once per k, which on every training step of a small CPU
    model costs a tenth of a millisecond or more; this is one `topk`, a comparison, a sum and
    two in-place adds. `compute()` returns `{"acc": …, "acc_top5": …}` (k = 1 is plain `acc`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1,), **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive integers, got {list(ks)}")
        self.ks = tuple(sorted(set(ks)))
        self.names = ["acc" if k == 1 else f"acc_top{k}" for k in self.ks]
        # hits[j]: samples whose (j+1)-th best guess is the label; top-k hits are hits[:k].sum()
        self.add_state("hits", torch.zeros(self.ks[-1], dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        top = logits.topk(min(self.ks[-1], logits.shape[1]), dim=1).indices
        self.hits[: top.shape[1]].add_((top == target.unsqueeze(1)).sum(dim=0))
        self.total.add_(target.shape[0])

    def compute(self) -> dict[str, Tensor]:
        rates = self.hits.cumsum(0).float() / self.total.clamp(min=1)
        return {name: rates[k - 1] for name, k in zip(self.names, self.ks, strict=True)}

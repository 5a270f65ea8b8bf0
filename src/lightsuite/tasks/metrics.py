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


class LossMean(Metric):
    """The mean of a stream of losses, given a group at a time: torchmetrics' `MeanMetric`, cheaper.

    The same states, arithmetic and result as `MeanMetric(nan_strategy="disable")` (a NaN survives the
    mean, so that a diverged run is noticed): its update broadcasts and casts a weight tensor of ones
    and multiplies by it, about ten tensor ops per call, which a tiny sequence model pays once per
    Lightning step; this is a sum and two in-place adds.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("mean_value", torch.tensor(0.0, dtype=self.dtype), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0, dtype=self.dtype), dist_reduce_fx="sum")

    def update(self, losses: Tensor) -> None:
        self.mean_value += losses.to(self.dtype).sum()
        self.weight += losses.numel()

    def compute(self) -> Tensor:
        return self.mean_value / self.weight


class MeanAbsoluteScaledError(Metric):
    """MASE (Hyndman & Koehler 2006): the forecast's MAE over the in-sample MAE of the seasonal naive.

    The denominator is the mean |y_t - y_{t-period}| over the training series, set once with
    `set_scale(train_series)`; a value below 1 beats the seasonal naive forecast's training error.
    torchmetrics has no MASE, hence this class.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, period: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self.scale: float | None = None
        self.add_state("abs_error", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def set_scale(self, train_series: Tensor) -> None:
        series = torch.as_tensor(train_series, dtype=torch.float64)
        if len(series) <= self.period:
            raise ValueError(f"MASE needs more than period={self.period} training values, got {len(series)}")
        scale = (series[self.period :] - series[: -self.period]).abs().mean().item()
        if scale == 0:
            raise ValueError("MASE is undefined: the training series repeats itself exactly every period")
        self.scale = scale

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.abs_error += (preds.double() - target.double()).abs().sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        if self.scale is None:
            raise RuntimeError("call set_scale(train_series) before computing MASE")
        return self.abs_error / self.total.clamp(min=1) / self.scale

"""Learning-rate schedules stepped once per optimizer step.

Each takes the optimizer and the run's total number of steps (the task supplies it from the
trainer), so a config only names the shape of the schedule. Warmup ramps linearly from
`warmup_start` x lr to lr over `warmup_steps`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


@dataclass
class _Factor:
    """lr multiplier as a function of the step: warmup, then multistep or cosine decay."""

    total_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.1
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    cosine: bool = False
    min_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        if self.cosine:
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return self.gamma ** bisect_right(self.milestones, step)


def constant(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.1
) -> LRScheduler:
    """The optimizer's lr throughout (after an optional warmup)."""
    return LambdaLR(optimizer, _Factor(total_steps, warmup_steps, warmup_start))


def multistep(
    optimizer: Optimizer,
    total_steps: int,
    milestones: Sequence[int] = (32000, 48000),
    gamma: float = 0.1,
    warmup_steps: int = 0,
    warmup_start: float = 0.1,
) -> LRScheduler:
    """lr x `gamma` at each milestone step: He et al.'s CIFAR recipe (÷10 at 32k and 48k)."""
    if list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing, got {list(milestones)}")
    return LambdaLR(optimizer, _Factor(total_steps, warmup_steps, warmup_start, tuple(milestones), gamma))


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    min_lr_ratio: float = 0.0,
    warmup_steps: int = 0,
    warmup_start: float = 0.1,
) -> LRScheduler:
    """Half a cosine from lr down to `min_lr_ratio` x lr at the last step."""
    return LambdaLR(
        optimizer, _Factor(total_steps, warmup_steps, warmup_start, cosine=True, min_lr_ratio=min_lr_ratio)
    )


def one_cycle(
    optimizer: Optimizer,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LRScheduler:
    """torch's one-cycle policy (Smith & Topin), peaking at the optimizer's configured lr."""
    peak = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peak,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )

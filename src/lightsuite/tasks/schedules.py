"""Learning-rate schedules stepped once per optimizer step.

Each takes the optimizer and the run's total number of steps (the task supplies it from the
trainer), so a config only names the shape of the schedule. Warmup ramps linearly from
`warmup_start` x lr to lr over `warmup_steps`.

A resumed run restores its schedule from the checkpoint; when the resumed run is longer or shorter
than the one that saved it, what depends on the length is refitted to the new length from where it
stands (`load_state_dict`): the cosine's remaining decay and the one-cycle's remaining cycle are
laid over the new remaining steps, so the lr at the current step is unchanged and the schedule
still ends where it ended. Constant and multistep schedules count steps, not the length, and go on
as they were. A length-dependent schedule that has run its course has nothing left to stretch: a
longer run of it is refused before any work (`schedule_ended`).
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytorch_lightning.utilities import rank_zero_only
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


@dataclass
class _Factor:
    """lr multiplier as a function of the step: warmup, then multistep or cosine decay.

    `decay_from`/`decay_done`: the cosine's progress (0..1) at step `decay_from` (None: 0 at the
    end of the warmup); a resume with another length moves them to its first step.
    """

    total_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.1
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    cosine: bool = False
    min_lr_ratio: float = 0.0
    decay_from: int | None = None
    decay_done: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        if self.cosine:
            t = self.progress(step)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return self.gamma ** bisect_right(self.milestones, step)

    def progress(self, step: int) -> float:
        """How much of the cosine's decay lies behind `step` (0 before it starts, 1 at its end)."""
        start = self.warmup_steps if self.decay_from is None else self.decay_from
        span = max(1, self.total_steps - start)
        return min(1.0, self.decay_done + (1 - self.decay_done) * max(0, step - start) / span)

    @property
    def kind(self) -> str:
        return "cosine" if self.cosine else "multistep" if self.milestones else "constant"


class _Schedule(LambdaLR):
    """LambdaLR around one `_Factor`, refitted to the resumed run's length."""

    def step(self, epoch: int | None = None) -> None:
        """One step; a constant schedule past its warmup only counts it.

        There LambdaLR would write `base_lr x 1.0` (the lr every group already has) into each group
        and read the lrs back: the same state, but for a tiny sequence model a per-update cost of a
        few tenths of a percent. Any other step (warmup, decay, an lr changed from outside) takes
        LambdaLR's path.
        """
        factor = self.lr_lambdas[0]
        if (
            epoch is None
            and self._step_count > 1
            and not factor.cosine
            and not factor.milestones
            and self.last_epoch + 1 >= factor.warmup_steps
            and self._last_lr == self.base_lrs
            and all(g["lr"] == lr for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True))
        ):
            self._step_count += 1
            self.last_epoch += 1
            return
        super().step(epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        total = self.lr_lambdas[0].total_steps  # this run's, before the checkpoint's overwrites it
        super().load_state_dict(state_dict)
        factor, step = self.lr_lambdas[0], self.last_epoch
        old = factor.total_steps
        if total == old or total <= step:  # the same run, or nothing left to train
            return
        if factor.cosine:
            start = factor.warmup_steps if factor.decay_from is None else factor.decay_from
            if step > start:
                factor.decay_done, factor.decay_from = factor.progress(step), step
            left = 1 - factor.progress(step)
            factor.total_steps = total
            _say(
                f"lr schedule: cosine resumed at step {step} of {old}, now of {total}: its remaining "
                f"{left:.0%} of the decay spans steps {max(step, start)}-{total}"
            )
        else:
            factor.total_steps = total
            _say(
                f"lr schedule: {factor.kind} does not depend on the run's length ({old} -> {total} steps); "
                "it goes on unchanged"
            )


class _OneCycle(OneCycleLR):
    """OneCycleLR whose remaining cycle can be laid over a resumed run's new length.

    The cycle keeps its own clock (`total_steps` positions); the run's step `t` maps to position
    `warp_pos + (t - warp_from) * warp_rate` (the identity until a resume changes `run_steps`).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, **kwargs: Any) -> None:
        self.run_steps, self.warp_from, self.warp_pos, self.warp_rate = total_steps, 0, 0.0, 1.0
        super().__init__(optimizer, total_steps=total_steps, **kwargs)

    def position(self, step: int) -> float:
        """Where on the cycle's clock the run's `step` falls."""
        if self.warp_rate == 1.0 and self.warp_from == 0:
            return step
        return min(self.total_steps - 1, self.warp_pos + (step - self.warp_from) * self.warp_rate)

    def get_lr(self) -> list[Any]:
        step = self.last_epoch
        self.last_epoch = self.position(step)  # torch's formula reads the step from here
        try:
            return super().get_lr()
        finally:
            self.last_epoch = step

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        total = self.run_steps
        super().load_state_dict(state_dict)
        # a checkpoint saved before runs could be stretched has a plain OneCycleLR's state
        for key, default in (("run_steps", self.total_steps), ("warp_from", 0), ("warp_pos", 0.0)):
            setattr(self, key, state_dict.get(key, default))
        self.warp_rate = state_dict.get("warp_rate", 1.0)
        step, old = self.last_epoch, self.run_steps
        if total == old or total - 1 <= step:
            return
        here = self.position(step)
        self.warp_from, self.warp_pos, self.run_steps = step, float(here), total
        self.warp_rate = (self.total_steps - 1 - here) / (total - 1 - step)
        _say(
            f"lr schedule: one-cycle resumed at step {step} of {old}, now of {total}: its remaining "
            f"{self.total_steps - 1 - here:g} steps are stretched over {total - 1 - step}"
        )


def schedule_ended(state: Mapping[str, Any]) -> str | None:
    """Why a longer run cannot go on with this saved schedule state, or None when it can.

    A cosine or one-cycle schedule whose checkpoint stands at (or past) its last step has nothing
    left to lay over more steps: it would train on at its final lr (0 for the default cosine).
    """
    step = int(state.get("last_epoch", 0))
    lambdas = state.get("lr_lambdas") or [None]
    if isinstance(lambdas[0], Mapping) and lambdas[0].get("cosine"):
        factor = _Factor(**lambdas[0])
        if factor.progress(step) >= 1:
            floor = factor.min_lr_ratio * state.get("base_lrs", [1.0])[0]
            return f"its cosine lr schedule ended at step {step} (lr {floor:g} from there on)"
    if "_schedule_phases" in state:
        end = int(state.get("run_steps", state["total_steps"])) - 1
        if step >= end:
            return f"its one-cycle lr schedule ended at step {step}"
    return None


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr)


def constant(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.1
) -> LRScheduler:
    """The optimizer's lr throughout (after an optional warmup)."""
    return _Schedule(optimizer, _Factor(total_steps, warmup_steps, warmup_start))


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
    if gamma <= 0:  # 0 stops training at the first milestone, a negative gamma ascends the loss
        raise ValueError(f"gamma must be positive, got {gamma}")
    return _Schedule(optimizer, _Factor(total_steps, warmup_steps, warmup_start, tuple(milestones), gamma))


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    min_lr_ratio: float = 0.0,
    warmup_steps: int = 0,
    warmup_start: float = 0.1,
) -> LRScheduler:
    """Half a cosine from lr down to `min_lr_ratio` x lr at the last step."""
    return _Schedule(
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
    return _OneCycle(
        optimizer,
        max_lr=peak,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )

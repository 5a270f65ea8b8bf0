"""The lr schedules follow their formulas step by step, warmup included."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lightsuite import CONFIG_DIR
from lightsuite.tasks import schedules


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def sgd(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_multistep_multiplies_by_gamma_at_each_milestone():
    # not 0.1, the default: a gamma that never reached the schedule would go unnoticed
    got = lrs(schedules.multistep(sgd(), total_steps=10, milestones=[3, 6], gamma=0.5), 8)
    assert got == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)


def test_multistep_rejects_unsorted_milestones():
    with pytest.raises(ValueError, match="increasing"):
        schedules.multistep(sgd(), total_steps=10, milestones=[6, 3])


def test_warmup_ramps_linearly_then_hands_over():
    got = lrs(
        schedules.multistep(sgd(), total_steps=10, milestones=[8], warmup_steps=4, warmup_start=0.1), 10
    )
    assert got[:4] == pytest.approx([0.01, 0.0325, 0.055, 0.0775])
    assert got[4:8] == pytest.approx([0.1] * 4) and got[8:] == pytest.approx([0.01] * 2)


def test_cosine_runs_from_lr_to_floor_over_the_run():
    total = 20
    got = lrs(schedules.cosine(sgd(), total_steps=total, min_lr_ratio=0.1), total + 3)
    assert got[0] == pytest.approx(0.1)
    assert got[total // 2] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    # and stays at the floor past the end (a resumed run with more steps than planned)
    assert got[total:] == pytest.approx([0.01] * 3)
    assert all(a >= b for a, b in itertools.pairwise(got))
    expected = [0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / total))) for t in range(total)]
    assert got[:total] == pytest.approx(expected)


def test_one_cycle_peaks_at_the_configured_lr():
    # none of torch's defaults (0.3, 25, 1e4), so each option must reach OneCycleLR
    schedule = schedules.one_cycle(
        sgd(0.4), total_steps=100, pct_start=0.2, div_factor=10, final_div_factor=100
    )
    got = lrs(schedule, 100)
    assert max(got) == pytest.approx(0.4)
    assert got.index(max(got)) == pytest.approx(20, abs=1)
    assert got[0] == pytest.approx(0.4 / 10) and got[-1] == pytest.approx(0.4 / 10 / 100)


def test_constant_holds_after_warmup():
    got = lrs(schedules.constant(sgd(), total_steps=5, warmup_steps=2, warmup_start=0.5), 5)
    assert got == pytest.approx([0.05, 0.075, 0.1, 0.1, 0.1])


def test_schedule_state_survives_a_checkpoint():
    first = schedules.cosine(sgd(), total_steps=10)
    lrs(first, 4)
    second = schedules.cosine(sgd(), total_steps=10)
    # as in a checkpoint: the optimizer's param groups carry the lr, the scheduler its step count
    second.optimizer.load_state_dict(first.optimizer.state_dict())
    second.load_state_dict(first.state_dict())
    assert lrs(second, 3) == pytest.approx(lrs(first, 3))


SCHEDULE_CONFIGS = (Path(CONFIG_DIR) / "task" / "scheduler").glob("*.yaml")
WARMUP_SCHEDULES = sorted(p.stem for p in SCHEDULE_CONFIGS if "warmup_steps" in p.read_text())


@pytest.mark.parametrize("name", WARMUP_SCHEDULES)
def test_every_schedule_with_a_warmup_key_honours_it(make_cfg, name):
    """Built from its config file as a run builds it: the warmup keys must reach the schedule."""
    assert "cosine" in WARMUP_SCHEDULES  # the default schedule must be among those checked
    overrides = [
        f"task/scheduler={name}",
        "task.scheduler.warmup_steps=4",
        "task.scheduler.warmup_start=0.25",
    ]
    cfg = make_cfg("train", overrides)
    total = 20
    got = lrs(instantiate(cfg.task.scheduler)(sgd(), total_steps=total), total)
    assert got[:4] == pytest.approx([0.025, 0.04375, 0.0625, 0.08125])
    # the full lr is reached right after the warmup and never exceeded
    assert got[4] == pytest.approx(0.1) and max(got) == pytest.approx(0.1)


def test_cosine_decays_over_the_steps_after_warmup():
    total, warmup = 20, 4
    got = lrs(schedules.cosine(sgd(), total_steps=total, warmup_steps=warmup, min_lr_ratio=0.0), total + 1)
    span = total - warmup
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * t / span)) for t in range(span + 1)]
    assert got[warmup:] == pytest.approx(expected, abs=1e-12)


def test_called_without_options_schedules_have_no_warmup():
    assert lrs(schedules.constant(sgd(), total_steps=4), 4) == pytest.approx([0.1] * 4)
    assert lrs(schedules.multistep(sgd(), total_steps=4), 4) == pytest.approx([0.1] * 4)
    cosine = lrs(schedules.cosine(sgd(), total_steps=4), 5)
    assert cosine[0] == pytest.approx(0.1) and cosine[-1] == pytest.approx(0.0, abs=1e-12)

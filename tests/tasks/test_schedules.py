"""The lr schedules follow their formulas step by step, warmup included."""

from __future__ import annotations

import io
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


# --- a resume with another length (issue 15) ---------------------------------------------------------------


def resumed(build, steps_done: int, old_total: int, new_total: int, lr: float = 0.1):
    """The schedule a run of `new_total` steps resumes from a checkpoint saved after `steps_done`
    steps of a run of `old_total`: the state goes through torch.save/load as in a checkpoint."""
    first = build(sgd(lr), old_total)
    lrs(first, steps_done)
    buffer = io.BytesIO()
    torch.save({"optimizer": first.optimizer.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    second = build(sgd(lr), new_total)
    second.optimizer.load_state_dict(saved["optimizer"])
    second.load_state_dict(saved["scheduler"])
    return second


def cosine_lr(t: float, floor: float = 0.1, lr: float = 0.1) -> float:
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


@pytest.mark.parametrize(("done", "new_total"), [(4, 16), (4, 7), (1, 16)])
def test_cosine_resumed_longer_or_shorter_lays_its_rest_over_the_new_length(capsys, done, new_total):
    def build(opt, total):
        return schedules.cosine(opt, total_steps=total, min_lr_ratio=0.1)

    # `done` of 10 steps behind: done/10 of the decay, the rest now over steps done..new_total
    schedule = resumed(build, done, 10, new_total)
    got = lrs(schedule, new_total - done + 1)
    behind = done / 10
    progress = [behind + (1 - behind) * (t - done) / (new_total - done) for t in range(done, new_total + 1)]
    expected = [cosine_lr(u) for u in progress]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] == pytest.approx(cosine_lr(behind)) and got[-1] == pytest.approx(0.01)
    assert f"cosine resumed at step {done} of 10, now of {new_total}" in capsys.readouterr().err
    # killed again and resumed with the same (new) length: the stretched schedule goes on exactly
    again = resumed(build, done, 10, new_total)
    lrs(again, 2)
    third = build(sgd(), new_total)
    third.optimizer.load_state_dict(again.optimizer.state_dict())
    third.load_state_dict(again.state_dict())
    assert lrs(third, new_total - done - 2) == pytest.approx(expected[2:-1], abs=1e-12)


def test_cosine_resumed_in_warmup_keeps_the_warmup_and_decays_over_the_new_length():
    def build(opt, total):
        return schedules.cosine(opt, total_steps=total, warmup_steps=6, warmup_start=0.2)

    got = lrs(resumed(build, 3, 20, 30), 30 - 3)
    warmup = [0.1 * (0.2 + 0.8 * t / 6) for t in range(3, 6)]
    decay = [cosine_lr((t - 6) / 24, floor=0.0) for t in range(6, 30)]
    assert got == pytest.approx(warmup + decay, abs=1e-12)


def test_same_length_resume_is_exact():
    for build in (
        lambda opt, total: schedules.cosine(opt, total_steps=total, warmup_steps=2),
        lambda opt, total: schedules.one_cycle(opt, total_steps=total),
    ):
        whole = build(sgd(), 12)
        expected = lrs(whole, 12)
        assert lrs(resumed(build, 5, 12, 12), 7) == expected[5:]


def one_cycle_lr(pos: float, total: int, peak: float, pct: float, div: float, final_div: float) -> float:
    """Smith & Topin's cycle with cosine annealing, written from torch's documented phases."""

    def anneal(a: float, b: float, p: float) -> float:
        return b + (a - b) / 2 * (math.cos(math.pi * p) + 1)

    start, low = peak / div, peak / div / final_div
    up = pct * total - 1
    if pos <= up:
        return anneal(start, peak, pos / up)
    return anneal(peak, low, (pos - up) / (total - 1 - up))


def test_one_cycle_resumed_longer_lays_its_rest_over_the_new_length(capsys):
    options = {"pct_start": 0.3, "div_factor": 10.0, "final_div_factor": 100.0}

    def build(opt, total):
        return schedules.one_cycle(opt, total_steps=total, **options)

    # before its peak (step 5 of 20): the rest of the rise and the whole fall now span steps 3..39
    got = lrs(resumed(build, 3, 20, 40, lr=0.4), 40 - 3)
    positions = [3 + (t - 3) * (19 - 3) / (39 - 3) for t in range(3, 40)]
    expected = [one_cycle_lr(p, 20, 0.4, 0.3, 10.0, 100.0) for p in positions]
    assert got == pytest.approx(expected, rel=1e-9)
    assert got[-1] == pytest.approx(0.4 / 10 / 100) and max(got) > 0.39
    assert "one-cycle resumed at step 3 of 20, now of 40" in capsys.readouterr().err


def test_schedules_counted_in_steps_go_on_unchanged_after_their_end(capsys):
    def build(opt, total):
        return schedules.multistep(opt, total_steps=total, milestones=[3, 6], gamma=0.5)

    # a finished multistep run trained on: its milestones stay where they were
    assert lrs(resumed(build, 8, 8, 12), 4) == pytest.approx([0.025] * 4)
    assert "multistep does not depend on the run's length" in capsys.readouterr().err
    assert schedules.schedule_ended(build(sgd(), 8).state_dict()) is None


def test_an_ended_schedule_cannot_be_stretched():
    cosine = schedules.cosine(sgd(), total_steps=6)
    lrs(cosine, 5)
    assert schedules.schedule_ended(cosine.state_dict()) is None  # one step left to stretch
    lrs(cosine, 1)
    assert "cosine lr schedule ended at step 6 (lr 0 " in schedules.schedule_ended(cosine.state_dict())
    cycle = schedules.one_cycle(sgd(), total_steps=6)
    lrs(cycle, 4)
    assert schedules.schedule_ended(cycle.state_dict()) is None
    lrs(cycle, 2)
    assert "one-cycle lr schedule ended" in schedules.schedule_ended(cycle.state_dict())


# --- the constant schedule's counting step ------------------------------------------------------------------


def test_a_constant_schedule_past_its_warmup_only_counts_and_keeps_lambdalrs_state(monkeypatch):
    """Past the warmup the lr is not recomputed (no `get_lr`), and the state is LambdaLR's, step by step;
    an lr set from outside is still put back, as LambdaLR does."""
    fast = schedules.constant(sgd(), total_steps=12, warmup_steps=3, warmup_start=0.5)
    plain = torch.optim.lr_scheduler.LambdaLR(sgd(), fast.lr_lambdas[0])
    computed = []
    get_lr = torch.optim.lr_scheduler.LambdaLR.get_lr
    monkeypatch.setattr(type(fast), "get_lr", lambda self: computed.append(self.last_epoch) or get_lr(self))
    for step in range(10):
        if step == 6:
            for scheduler in (fast, plain):
                scheduler.optimizer.param_groups[0]["lr"] = 0.7
        assert lrs(fast, 1) == lrs(plain, 1)
        state, expected = fast.state_dict(), plain.state_dict()
        assert {k: v for k, v in state.items() if k != "lr_lambdas"} == {
            k: v for k, v in expected.items() if k != "lr_lambdas"
        }
    # computed through the warmup and its first full-lr step, and once after the lr was changed
    assert computed == [1, 2, 3, 7]

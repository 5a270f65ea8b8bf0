"""`debug=profiler`: a short run under Lightning's profilers, the profile kept in the run dir."""

from __future__ import annotations

import json
import re

import pytest
from conftest import FAST

from lightsuite.train import train

SHORT = [
    *FAST,
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def _calls(report: str, action: str) -> int:
    """The call count of `action` in a SimpleProfiler table."""
    row = next(line for line in report.splitlines() if line.startswith(f"|  {action} "))
    return int(row.split("|")[3])


def test_the_simple_profile_counts_every_step_through_lightnings_dispatch(make_cfg, tmp_path):
    """3 training batches: 3 optimizer steps and 3 backward passes in the table."""
    metrics = train(make_cfg("train", [*SHORT, "debug=profiler"]))
    assert "test/acc" in metrics
    report = (tmp_path / "run" / "profile" / "fit-profile.txt").read_text()
    assert _calls(report, "[LightningModule]ClassificationTask.optimizer_step") == 3
    assert _calls(report, "[Strategy]SingleDeviceStrategy.backward") == 3
    assert _calls(report, "run_training_epoch") == 1
    assert (tmp_path / "run" / "profile" / "test-profile.txt").exists()


def test_a_profiled_sequence_run_shows_each_update_of_a_group(make_cfg, tmp_path):
    """Grouped updates skip Lightning's backward and optimizer dispatch unless something could notice:
    a profiler does, so each of the 6 updates (3 steps of 2) reaches the hooks in its table."""
    overrides = [
        *SHORT,
        "experiment=adding_lstm",
        "model.hidden_size=8",
        "data.seq_len=8",
        "data.batches_per_step=2",
        "debug=profiler",
    ]
    train(make_cfg("train", overrides))
    report = (tmp_path / "run" / "profile" / "fit-profile.txt").read_text()
    assert _calls(report, "[Strategy]SingleDeviceStrategy.training_step") == 3
    assert _calls(report, "optimizer_step") == 6
    assert _calls(report, "[LightningModule]SequenceRegressionTask.on_before_optimizer_step") == 6
    assert _calls(report, "[LightningModule]SequenceRegressionTask.on_after_backward") == 6


def test_the_advanced_profile_is_cprofile_of_each_action(make_cfg, tmp_path):
    train(make_cfg("train", [*SHORT, "debug=profiler", "profiler=advanced"]))
    report = (tmp_path / "run" / "profile" / "fit-profile.txt").read_text()
    stats = re.search(
        r"Profile stats for: \[Strategy\]SingleDeviceStrategy\.training_step\n.*?(\d+) function calls",
        report,
        re.S,
    )
    assert stats and int(stats.group(1)) > 0, report[:2000]
    # the task's own training_step, once per batch, and the convolutions under it
    assert re.search(r"^\s+3\s.*classification\.py:\d+\(training_step\)$", report, re.M), report[:3000]
    assert "torch.conv2d" in report


@pytest.mark.slow
def test_the_torch_profiler_leaves_a_trace_tensorboard_reads(make_cfg, tmp_path):
    # debug=profiler's validation steps (3 batches, 2 sanity): under 5, Lightning drops the trace schedule
    train(make_cfg("train", [*FAST, "trainer.limit_train_batches=10", "debug=profiler", "profiler=pytorch"]))
    profile = tmp_path / "run" / "profile"
    (trace,) = profile.glob("fit-profile-*training_step*.pt.trace.json")
    events = json.loads(trace.read_text())["traceEvents"]
    names = {event.get("name") for event in events}
    # the recorded steps ran the network's convolutions forward and backward
    assert "aten::convolution" in names and any("ConvolutionBackward" in str(n) for n in names)
    assert "aten::convolution" in (profile / "fit-profile.txt").read_text()

"""A run stopped by a signal in the middle of an epoch saves a checkpoint at that step and, resumed,
ends with the `metrics.json` and CSV log of a run that never stopped, in every family; a time
budget counts the time of every segment."""

from __future__ import annotations

import csv
import dataclasses
import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import FAST

from lightsuite.errors import ConfigError, RunInterrupted
from lightsuite.run.preemption import STATE_KEY, MidEpochCheckpoint
from lightsuite.run.resume import Checkpointed, reached_end
from lightsuite.train import train

# every step logged, so that a lost, repeated or changed row shows in the CSV log
COMMON = [*FAST, "trainer.deterministic=true", "callbacks.early_stopping=null", "trainer.log_every_n_steps=1"]
COMMON += ["+trainer.num_sanity_val_steps=0"]
FAMILIES = {
    # augmentation, shuffled batches, a per-step cosine schedule, epoch means of loss and accuracy
    "classification": [
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=6",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=1",
    ],
    # two optimizers, the task's own epoch sums of both losses
    "gan": [
        "experiment=gaussians_gan",
        "data.num_train=768",
        "data.num_val=200",
        "data.num_test=200",
        "data.batch_size=128",
        "model.hidden_size=16",
        "task.num_eval_samples=200",
        "trainer.max_epochs=2",
    ],
    # groups of batches per Lightning step (manual optimization), clipping
    "sequence": [
        "experiment=adding_lstm",
        "model.hidden_size=8",
        "data.seq_len=12",
        "data.num_train=384",
        "data.num_val=32",
        "data.num_test=32",
        "data.batch_size=16",
        "data.batches_per_step=4",
        "trainer.max_epochs=2",
    ],
}


def _signal_at(step: int, signum: int) -> list[str]:
    return [
        "+callbacks.signal_at._target_=signal_helpers.SignalAt",
        f"+callbacks.signal_at.step={step}",
        f"+callbacks.signal_at.signum={int(signum)}",
    ]


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "csv" / "metrics.csv").open()))


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    """Each family's uninterrupted run, once for the module."""
    return {}


def _reference(make_cfg, references: dict[str, Path], family: str, root: Path) -> Path:
    if family not in references:
        run = root / f"reference-{family}"
        train(make_cfg("train", [*COMMON, *FAMILIES[family]], run_dir=run))
        references[family] = run
    return references[family]


@pytest.mark.parametrize(
    ("family", "signum"),
    [
        ("classification", signal.SIGTERM),
        ("classification", signal.SIGINT),
        ("gan", signal.SIGTERM),
        ("sequence", signal.SIGTERM),
    ],
)
def test_stopped_mid_epoch_then_resumed_equals_the_uninterrupted_run(
    make_cfg, references, tmp_path_factory, tmp_path, family, signum
):
    reference = _reference(make_cfg, references, family, tmp_path_factory.getbasetemp())
    ref_ckpt = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    steps = ref_ckpt["global_step"]  # both epochs
    # a step inside the second epoch (the GAN counts both optimizers' steps)
    stop_at = steps // 2 + max(2, steps // 8)
    run = tmp_path / "run"
    overrides = [*COMMON, *FAMILIES[family]]
    with pytest.raises(RunInterrupted, match=r"interrupted in epoch 1 at step \d+; resume .*last\.ckpt"):
        train(make_cfg("train", [*overrides, *_signal_at(stop_at, signum)], run_dir=run))
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert STATE_KEY in saved, "the stop did not save a mid-epoch checkpoint"
    assert saved["epoch"] == 1 and steps // 2 < saved["global_step"] < steps, saved["global_step"]
    assert not (run / "metrics.json").exists()

    resumed = train(make_cfg("train", overrides, run_dir=run))
    assert resumed == json.loads((reference / "metrics.json").read_text())
    assert _rows(run) == _rows(reference)
    # the suite's own per-epoch record too: epoch 0 kept, the epoch cut short written once, when it ended
    assert (run / "history.jsonl").read_text() == (reference / "history.jsonl").read_text()


def test_a_checkpoint_every_n_steps_is_written_inside_the_epoch(make_cfg, tmp_path):
    run = tmp_path / "run"
    overrides = [*COMMON, *FAMILIES["classification"], "trainer.max_epochs=1", "test=false"]
    overrides += ["callbacks.mid_epoch_checkpoint.every_n_steps=4", "callbacks.last_checkpoint=null"]
    train(make_cfg("train", overrides, run_dir=run))
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    # step 4 of 6: the epoch's last step is never a save point
    assert saved["global_step"] == 4 and STATE_KEY in saved
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 4}]


@pytest.mark.parametrize(
    ("key", "value"),
    [("every_n_minutes", 0), ("every_n_minutes", -1.5), ("every_n_steps", 0), ("every_n_steps", 2.5)],
)
def test_a_wrong_interval_is_one_line(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"mid_epoch_checkpoint\.{key}={value} must be a positive"):
        MidEpochCheckpoint(tmp_path, **{key: value})


def test_a_time_budget_counts_the_training_time_of_earlier_segments(make_cfg, tmp_path, capsys):
    run = tmp_path / "run"
    budget = "00:00:10:00"  # ten minutes: far more than this tiny run's own segment
    overrides = [*COMMON, *FAMILIES["classification"], "trainer.max_epochs=4", f"+trainer.max_time={budget}"]
    with pytest.raises(RunInterrupted):
        train(make_cfg("train", [*overrides, *_signal_at(9, signal.SIGTERM)], run_dir=run))
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    spent = ckpt["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert 0 < spent < 600 and ckpt["global_step"] == 9
    # as if the segments before the requeue had trained for ten minutes and a second
    ckpt["callbacks"]["Timer"]["time_elapsed"]["train"] = 601.0
    torch.save(ckpt, last)

    capsys.readouterr()
    metrics = train(make_cfg("train", overrides, run_dir=run))
    err = capsys.readouterr().err
    assert (
        f"trainer.max_time={budget} ended the run after 601 s of training (601 s of it in earlier segments)"
        in err
    )
    assert torch.load(last, weights_only=True)["global_step"] == 9, "the resumed segment trained on"
    assert "test/acc" in metrics and (run / "metrics.json").is_file()

    # with a larger budget it trains on to its last epoch
    train(make_cfg("train", [*overrides[:-1], "+trainer.max_time=00:00:20:00"], run_dir=run))
    assert torch.load(last, weights_only=True)["global_step"] == 24


def test_a_run_its_budget_ended_is_over_unless_the_budget_grows():
    saved = Checkpointed(path="last.ckpt", epoch=2, epochs_done=2, global_step=9, stopped=True)
    by_time = dataclasses.replace(saved, stopped_by="max_time", train_seconds=601.0)
    assert (
        reached_end(by_time, 4, None, "00:00:10:00")
        == "trainer.max_time=00:00:10:00 was spent (601 s of training)"
    )
    assert reached_end(by_time, 4, None, {"minutes": 20}) is None
    assert reached_end(by_time, 4, None, None) is None  # no budget now: it trains on
    early = dataclasses.replace(saved, stopped_by="early_stopping")
    assert reached_end(early, 4, None, {"minutes": 20}) == "early stopping ended it in epoch 2"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("'1 hour'", "trainer.max_time='1 hour' is not a duration"),
        ("00:00:00:00", "leaves no time to train"),
        ("{hours: x}", "is not a duration"),
        ("{fortnights: 1}", "is not a duration"),
    ],
)
def test_a_wrong_time_budget_is_one_line_before_any_work(value, error, make_cfg, tmp_path):
    from lightsuite.config.checks import check_config

    with pytest.raises(ConfigError, match=error):
        check_config(make_cfg("train", [f"+trainer.max_time={value}"]), imports=False)

"""A run killed with SIGKILL and started again with the same command ends exactly as if never stopped;
a finished run started again is recognised as finished; a longer resume refits its lr schedule."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ONE_TINY_EPOCH, run_cli

from lightsuite.errors import ConfigError
from lightsuite.run.files import metric_value
from lightsuite.run.resume import Checkpointed, reached_end
from lightsuite.train import train

# augmentation on, shuffled batches, a per-step schedule: everything a resume could get wrong
ARGS = [
    *FAST,
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "seed=7",
]
ENV = {"OMP_NUM_THREADS": "1"}


def _kill_after_first_checkpoint(run_dir: Path, cwd: Path) -> None:
    env = {**os.environ, "LIGHTSUITE_ROOT": str(cwd), **ENV}
    cmd = [sys.executable, "-m", "lightsuite.train", *ARGS, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if torch.load(last, weights_only=True)["epoch"] >= 0:
                    break
            except Exception:  # not written yet, or being written
                time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = torch.load(last, weights_only=True)
    assert killed_at["epoch"] < 3, "killed too late to test a resume"
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = tmp_path / "whole"
    proc = run_cli("lightsuite.train", *ARGS, f"hydra.run.dir={whole}", cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]

    resumed = tmp_path / "resumed"
    _kill_after_first_checkpoint(resumed, tmp_path)
    proc = run_cli("lightsuite.train", *ARGS, f"hydra.run.dir={resumed}", cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {resumed / 'checkpoints' / 'last.ckpt'}" in proc.stderr

    expected = json.loads((whole / "metrics.json").read_text())
    got = json.loads((resumed / "metrics.json").read_text())
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], f"{key}: resumed {got[key]} != uninterrupted {expected[key]}"
    # the CSV log holds every epoch once, those before the kill included
    assert (resumed / "csv" / "metrics.csv").read_text() == (whole / "csv" / "metrics.csv").read_text()
    assert (resumed / "history.jsonl").read_text() == (whole / "history.jsonl").read_text()

    # the same command once more: the run is finished, exit 0 with its metrics, nothing rewritten
    kept = (resumed / "metrics.json").stat().st_mtime_ns
    proc = run_cli("lightsuite.train", *ARGS, f"hydra.run.dir={resumed}", cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{resumed} has finished (4 of trainer.max_epochs=4 epochs done)" in proc.stderr
    assert (resumed / "metrics.json").stat().st_mtime_ns == kept


def test_auto_resume_off_starts_over(make_cfg, tmp_path):
    from lightsuite.run.resume import resume_checkpoint

    cfg = make_cfg("train", [])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(cfg) is None
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert resume_checkpoint(cfg) == str(last)
    cfg.auto_resume = False
    assert resume_checkpoint(cfg) is None
    cfg.ckpt_path = "elsewhere.ckpt"
    assert resume_checkpoint(cfg) == "elsewhere.ckpt"


def _files(run_dir: Path) -> dict[str, int]:
    """Each file of a run dir with its modification time: what a re-run must leave alone."""
    return {
        str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(run_dir.rglob("*")) if p.is_file()
    }


def test_rerun_of_a_finished_run_returns_its_metrics_and_a_longer_one_is_refused(make_cfg, tmp_path, capsys):
    run = tmp_path / "run"
    first = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH]))
    before = _files(run)
    capsys.readouterr()

    cfg = make_cfg("train", [*FAST, *ONE_TINY_EPOCH])  # the same command again
    again = train(cfg)
    assert again == first
    # what the entry point returns to a sweep: no "not logged" error
    assert metric_value(again, cfg.optimized_metric) == first["val/acc_best"]
    err = capsys.readouterr().err
    assert f"{run} has finished (1 of trainer.max_epochs=1 epochs done)" in err
    assert "resuming from" not in err
    assert _files(run) == before, "a finished run's re-run rewrote its files"

    # the default cosine ended with the run (lr 0 from there): nothing to stretch over a 2nd epoch
    longer = [*FAST, *ONE_TINY_EPOCH, "trainer.max_epochs=2"]
    with pytest.raises(ConfigError, match=r"its cosine lr schedule ended at step 2 \(lr 0 from there on\)"):
        train(make_cfg("train", longer))
    assert _files(run) == before


def test_finished_run_without_its_metrics_is_retested_to_the_same_values(make_cfg, tmp_path):
    """Killed while testing: the re-run fits nothing, tests again, and reports the fit it had."""
    first = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH]))
    (tmp_path / "run" / "metrics.json").unlink()
    again = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH]))
    assert again == first
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == first


def test_rerun_of_an_early_stopped_run_is_finished(make_cfg, tmp_path, capsys):
    # any val/acc reaches the threshold 0: early stopping ends the run after its first epoch of 3
    overrides = [
        *FAST,
        *ONE_TINY_EPOCH,
        "trainer.max_epochs=3",
        "+callbacks.early_stopping.stopping_threshold=0.0",
    ]
    first = train(make_cfg("train", overrides))
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    capsys.readouterr()
    assert train(make_cfg("train", overrides)) == first
    assert "has finished (early stopping ended it in epoch 0)" in capsys.readouterr().err


def test_reached_end_reads_the_limits_as_lightning_does():
    saved = Checkpointed(path="last.ckpt", epoch=1, epochs_done=2, global_step=20)
    assert reached_end(saved, 2, -1) == "2 of trainer.max_epochs=2 epochs done"
    assert reached_end(saved, 3, -1) is None
    assert reached_end(saved, None, 20) == "20 of trainer.max_steps=20 steps done"
    assert reached_end(saved, None, 21) is None  # max_epochs=None with a step budget: no epoch limit
    assert reached_end(saved, None, -1) is None  # max_epochs=None alone: Lightning's 1000
    assert reached_end(saved, 5, 30) is None
    stopped = Checkpointed(path="last.ckpt", epoch=1, epochs_done=2, global_step=20, stopped=True)
    assert reached_end(stopped, 5, -1) == "early stopping ended it in epoch 1"


def _logged_lrs(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")}


def test_longer_resume_follows_the_stretched_cosine(make_cfg, tmp_path, capsys):
    """Resumed after epoch 1 of 2 with trainer.max_epochs=3: the cosine's second half over two epochs."""
    per_epoch = 3
    tiny = [
        *FAST,
        f"trainer.limit_train_batches={per_epoch}",
        "trainer.limit_val_batches=1",
        "+trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "test=false",
    ]
    planned = make_cfg("train", [*tiny, "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=-1"])
    train(planned)
    whole = _logged_lrs(tmp_path / "run")
    lr = planned.task.optimizer.lr
    saved = tmp_path / "run" / "checkpoints" / "epoch_000.ckpt"

    capsys.readouterr()
    longer = tmp_path / "longer"
    train(make_cfg("train", [*tiny, "trainer.max_epochs=3", f"ckpt_path={saved}"], run_dir=longer))
    assert "cosine resumed at step 3 of 6, now of 9" in capsys.readouterr().err
    got = _logged_lrs(longer)
    assert sorted(got) == list(range(per_epoch, 3 * per_epoch))
    # half the decay was behind at step 3; the other half spans steps 3..9, the floor (0) at 9
    for step, value in got.items():
        progress = 0.5 + 0.5 * (step - 3) / (9 - 3)
        assert value == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * progress)), rel=1e-6), step
        assert value > 0
    assert got[3] == pytest.approx(whole[3], rel=1e-6)  # the resume step keeps its lr

    # the same length again: exactly the planned run's lrs, and nothing said about the schedule
    same = tmp_path / "same"
    train(make_cfg("train", [*tiny, "trainer.max_epochs=2", f"ckpt_path={saved}"], run_dir=same))
    assert "lr schedule" not in capsys.readouterr().err
    assert _logged_lrs(same) == {step: whole[step] for step in range(per_epoch, 2 * per_epoch)}


def test_a_moved_run_dir_resumes_with_its_checkpoints_state(make_cfg, tmp_path):
    """Copied off a cluster or renamed between a kill and the resume: the best checkpoint, its score
    and the kept files follow the dir (Lightning alone keeps the old dir's best path, and tests it)."""
    from lightsuite.run.checkpoints import RunDirCheckpoint

    first = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH]))
    (tmp_path / "run" / "metrics.json").unlink()  # killed while testing
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    assert train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH], run_dir=moved)) == first

    saved = torch.load(moved / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    (state,) = [v for k, v in saved.items() if "val/acc" in k and "ModelCheckpoint" in k]
    assert state["dirpath"] == str(tmp_path / "run" / "checkpoints")  # saved before the move
    callback = RunDirCheckpoint(dirpath=moved / "checkpoints", monitor="val/acc", mode="max")
    callback.load_state_dict(state)
    best = str(moved / "checkpoints" / "epoch_000.ckpt")
    assert (callback.best_model_path, callback.best_model_score) == (best, state["best_model_score"])
    assert callback.best_k_models == {best: state["best_model_score"]}

    # a best checkpoint that is gone is said in one line, not a FileNotFoundError from Lightning
    (moved / "metrics.json").unlink()
    Path(best).unlink()
    with pytest.raises(ConfigError, match=r"the best checkpoint of this fit, .*epoch_000.ckpt, is gone"):
        train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH], run_dir=moved))

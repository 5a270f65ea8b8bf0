"""A run killed with SIGKILL and started again with the same command ends exactly as if never stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, run_cli

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


def test_auto_resume_off_starts_over(make_cfg, tmp_path):
    from lightsuite.utils.resume import resume_checkpoint

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

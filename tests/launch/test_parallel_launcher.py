"""`hydra/launcher=parallel`: n_parallel jobs at once, each pinned to its own cores (and GPUs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import FAST, ONE_TINY_EPOCH, run_cli

from lightsuite.errors import ConfigError
from lightsuite.launch.ddp import cpu_count
from lightsuite.launch.parallel import gpu_devices, plan_slots, visible_gpus

HERE = Path(__file__).parent
# the jobs import the Stamp callback from this folder
ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
STAMP = "+callbacks.stamp._target_=scale_helpers.Stamp"


def _most_alive(stamps: list[dict]) -> int:
    """The most jobs alive at one instant (an end before a start at the same instant)."""
    events = sorted([(s["start"], 1) for s in stamps] + [(s["end"], -1) for s in stamps])
    alive = most = 0
    for _, step in events:
        alive += step
        most = max(most, alive)
    return most


@pytest.mark.slow
def test_four_jobs_two_at_a_time_and_a_failed_one_fails_alone(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "-m",
        "hydra/launcher=parallel",
        "hydra.launcher.n_parallel=2",
        *FAST,
        *ONE_TINY_EPOCH,
        STAMP,
        # job 2 diverges at run time (the sweep's preflight cannot see that)
        "task.optimizer.lr=0.1,0.05,1e30,0.02",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        # the launcher lowers the threads to each job's share of the cores
        env={**ENV, "OMP_NUM_THREADS": "4"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # run dirs as the basic launcher writes them: job numbers, each job's own overrides
    assert (sweep / "multirun.yaml").exists()
    lrs = ["0.1", "0.05", "1e+30", "0.02"]
    for number, lr in enumerate(lrs):
        job = sweep / str(number)
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["job"]["num"] == number and hydra_cfg["mode"] == "MULTIRUN"
        assert f"task.optimizer.lr={lr}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert (job / "metrics.json").exists() == (number != 2)

    stamps = [json.loads((sweep / str(n) / "stamp.json").read_text()) for n in range(4)]
    assert len({s["pid"] for s in stamps}) == 4, "jobs shared a process"
    assert _most_alive(stamps) == 2, stamps  # two ran at once, never three
    # disjoint threads and cores: each job its share of this machine's
    share = max(1, cpu_count() // 2)
    assert all(s["threads"] == min(share, 4) and len(s["cores"]) == share for s in stamps), stamps
    if cpu_count() >= 2:
        alive_together = [(a, b) for a in stamps for b in stamps if a["pid"] < b["pid"]]
        overlapping = [(a, b) for a, b in alive_together if a["start"] < b["end"] and b["start"] < a["end"]]
        assert all(not set(a["cores"]) & set(b["cores"]) for a, b in overlapping), stamps

    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["completed", "completed", "failed", "completed"]
    assert "train/loss became" in summary["jobs"][2]["error"]
    # the closing summary names the failed job and its log, which holds the job's error
    log = sweep / ".parallel" / "2_log.out"
    assert "job 2 failed: train/loss became nan in epoch 0" in proc.stderr
    assert f"its log: {log}" in proc.stderr and "train/loss became" in log.read_text()
    assert "parallel: 4 jobs ran, 3 completed, 1 failed" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == f"sweep summary: {sweep / 'sweep_summary.json'}"


@pytest.mark.slow
def test_optuna_n_jobs_runs_that_many_trials_at_once_with_ddp_inside_each(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "hparams_search=digits_resnet",
        "hydra/launcher=parallel",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "trainer=ddp_cpu",
        *FAST,
        *ONE_TINY_EPOCH,
        STAMP,
        "+callbacks.record._target_=scale_helpers.RecordRanks",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # n_parallel followed n_jobs: both trials ran at once
    stamps = [json.loads((sweep / str(n) / "stamp.json").read_text()) for n in range(2)]
    assert _most_alive(stamps) == 2, stamps
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["completed", "completed"]
    # each trial's two DDP ranks (Lightning's re-run of the command) trained that trial's values
    for number in range(2):
        lr = yaml.safe_load((sweep / str(number) / "config.yaml").read_text())["task"]["optimizer"]["lr"]
        ranks = [json.loads(p.read_text()) for p in sorted((sweep / str(number) / "ranks").glob("*.json"))]
        assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
        assert all(r["lr"] == pytest.approx(lr, rel=1e-12) for r in ranks), (lr, ranks)
    assert not (tmp_path / "outputs").exists(), "a rank ran the sweep again"


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_wrong_n_parallel_is_one_line(tmp_path, value):
    proc = run_cli(
        "lightsuite.train",
        "-m",
        "hydra/launcher=parallel",
        f"hydra.launcher.n_parallel={value}",
        "seed=1,2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: hydra.launcher.n_parallel={value} must be an integer at least 1 (the jobs run at once), "
        "e.g. hydra.launcher.n_parallel=2"
    )
    assert not (tmp_path / "sweep").exists()


def test_gpu_blocks_come_from_the_visible_gpus():
    visible = visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5,6,7"})
    assert visible == ["3", "5", "6", "7"]
    slots = plan_slots(2, 2, visible, cores=[0, 1, 2, 3, 4, 5])
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["3,5", "6,7"]
    assert [s.env()["OMP_NUM_THREADS"] for s in slots] == ["3", "3"]
    assert [s.cores for s in slots] == [(0, 1, 2), (3, 4, 5)]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu_devices("auto", 1, []) == 0 and gpu_devices("cpu", 2, visible) == 0
    assert gpu_devices("gpu", 2, visible) == 2 and gpu_devices("auto", "auto", visible) == 4
    with pytest.raises(
        ConfigError, match=r"n_parallel=3 jobs x trainer.devices=2 GPUs need 6, but 4 are visible"
    ):
        plan_slots(3, 2, visible, cores=[0, 1])
    # CPU jobs keep CUDA's environment as it is; more jobs than cores share them, unpinned
    (cpu,) = {s.env().get("CUDA_VISIBLE_DEVICES") for s in plan_slots(3, 0, visible, cores=[0, 1])}
    assert cpu is None
    assert [s.cores for s in plan_slots(3, 0, [], cores=[0, 1])] == [None, None, None]


def test_a_sweep_of_fewer_jobs_than_slots_gives_each_job_more_cores(monkeypatch):
    from omegaconf import OmegaConf

    from lightsuite.launch.parallel import plan

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    config = OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 1}})
    settings = {"n_parallel": 2}
    (one,), _ = plan(settings, config, jobs=1)  # a one-job sweep: all four cores
    assert one.cores == (0, 1, 2, 3) and one.env()["OMP_NUM_THREADS"] == "4"
    slots, _ = plan(settings, config, jobs=None)  # an Optuna search: batches, n_parallel slots
    assert [s.cores for s in slots] == [(0, 1), (2, 3)]

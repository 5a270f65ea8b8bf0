"""`hydra/launcher=slurm` against a real SLURM cluster: sbatch, srun tasks as DDP ranks, requeues.

Start a one-node cluster with `make slurm-up` (scripts/slurm-local.sh). Without one these tests skip,
unless LIGHTSUITE_REQUIRE_SLURM=1 (set by .ci/run once its cluster is up) makes that a failure.
Every job runs `trainer=ddp_cpu`: two SLURM tasks of one CPU each, so jobs take turns on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAST, ONE_TINY_EPOCH

HERE = Path(__file__).parent
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# the jobs inherit this environment (sbatch --export=ALL): they import the test callbacks from here
ENV = {"PYTHONPATH": str(HERE / "launch"), "OMP_NUM_THREADS": "1"}
JOB = [
    *FAST,
    "hydra/launcher=slurm",
    "hydra.launcher.timeout_min=20",
    "trainer=ddp_cpu",
    "+callbacks.record._target_=scale_helpers.RecordRanks",
]
TINY = ONE_TINY_EPOCH
BANNER = re.compile(r"^rank (\d)/2 \((\w+), (\d+) threads\): (.*); config (\w+)$", re.M)


def _answers() -> str | None:
    """Why no cluster answers, or None when one does with a node of at least 2 CPUs."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%c %t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo: {exc}"
    if proc.returncode != 0:
        return f"sinfo: {proc.stderr.strip() or proc.returncode}"
    nodes = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    if not any(int(cpus.rstrip("+")) >= 2 and state in ("idle", "mix", "alloc") for cpus, state in nodes):
        return f"no node with 2 CPUs up (sinfo: {proc.stdout.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    why = _answers()
    if why is None:
        return
    message = f"no SLURM cluster answers ({why}); start one with `make slurm-up`"
    if os.environ.get("LIGHTSUITE_REQUIRE_SLURM"):
        pytest.fail(message)
    pytest.skip(message)


def _sweep(tmp_path: Path, *args: str, cpus: int = 1) -> subprocess.Popen:
    """Start `lightsuite-train -m` on the cluster; each job's tasks ask for `cpus` CPUs each."""
    cmd = [sys.executable, "-m", "lightsuite.train", "-m", *JOB, f"hydra.launcher.cpus_per_task={cpus}"]
    cmd += [*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "LIGHTSUITE_ROOT": str(tmp_path), **ENV}
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the sweep did not end in {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    return out, err


def _array(sweep: Path, deadline_s: float = 120) -> str:
    """The job array's id, from the submitit folder the launcher writes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = sorted(p.name for p in (sweep / ".submitit").glob("*_0"))
        if found:
            return found[0].split("_")[0]
        time.sleep(0.2)
    pytest.fail("no job was submitted")


def _task_log(sweep: Path, array: str, job: int, task: int) -> str:
    """A SLURM task's stderr then stdout: Lightning is imported after Hydra sets up the job's logging,
    so its lines go through Hydra's handlers (stdout and train.log), the suite's own lines to stderr."""
    stem = sweep / ".submitit" / f"{array}_{job}" / f"{array}_{job}_{task}_log"
    return "".join(Path(f"{stem}.{ext}").read_text() for ext in ("err", "out"))


def _ranks(job_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((job_dir / "ranks").glob("rank*.json"))]


def _summary(sweep: Path) -> dict:
    return json.loads((sweep / "sweep_summary.json").read_text())


def _assert_ranks_run_their_job(job_dir: Path) -> dict:
    """Both ranks trained with the job's own config (seed, learning rate), two ranks in all."""
    cfg = yaml.safe_load((job_dir / "config.yaml").read_text())
    ranks = _ranks(job_dir)
    assert [r["rank"] for r in ranks] == [0, 1], f"{job_dir}: {ranks}"
    for r in ranks:
        assert r["world_size"] == 2 and r["threads"] == 1
        assert r["seed"] == cfg["seed"]
        assert r["lr"] == pytest.approx(cfg["task"]["optimizer"]["lr"], rel=1e-12)
    return cfg


def _assert_ran_as_two_slurm_tasks(sweep: Path, array: str, job: int, override: str) -> None:
    """Each SLURM task's own log: one rank each, started by SLURM, with this job's overrides."""
    logs = [_task_log(sweep, array, job, task) for task in (0, 1)]
    banners = [BANNER.findall(log) for log in logs]
    assert all(banners), f"job {job}: no rank line in its task logs"
    assert {b[0] for b in banners[0]} == {"0"} and {b[0] for b in banners[1]} == {"1"}, banners
    seen = {(env, over, digest) for b in banners for _, env, _, over, digest in b}
    assert len(seen) == 1, f"job {job}: its ranks differ: {seen}"
    ((env, over, _),) = seen
    assert env == "SLURMEnvironment", "Lightning started the ranks itself"
    assert override in over.split(), f"job {job} ran {over}"
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]


def test_multirun_jobs_run_as_two_slurm_tasks_and_failures_are_reported(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    # job 0 completes, job 1 diverges (a bad override the config check cannot know), job 2 is
    # cancelled while it trains (before fit, submitit ignores SIGTERM and a job may still finish)
    lrs = ["0.05", "1e+30", "0.1"]
    proc = _sweep(
        tmp_path,
        "trainer.max_epochs=6",
        "trainer.limit_train_batches=8",
        f"task.optimizer.lr={','.join(lrs)}",
    )
    array = _array(sweep)
    _wait_for_checkpoint(sweep / "2", proc)
    subprocess.run(["scancel", f"{array}_2"], check=True, timeout=30)
    out, err = _finish(proc)
    assert "sweep summary" in out, out[-3000:] + err[-3000:]

    jobs = _summary(sweep)["jobs"]
    assert [job["status"] for job in jobs] == ["completed", "failed", "failed"], jobs
    assert "train/loss became" in jobs[1]["error"]
    assert f"SLURM job {array}_2 ended CANCELLED without a result" in jobs[2]["error"]
    assert f"error: job 2: SLURM job {array}_2 ended CANCELLED" in err
    for job, lr in enumerate(lrs):
        _assert_ranks_run_their_job(sweep / str(job))
        _assert_ran_as_two_slurm_tasks(sweep, array, job, f"task.optimizer.lr={lr}")
    assert [len(list((sweep / str(job)).rglob("metrics.json"))) for job in range(3)] == [1, 0, 0]
    # no rank re-ran the command line: that would have made a run dir under outputs/
    assert not (tmp_path / "outputs").exists()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0",
        "1",
        "2",
    ]
    # srun gets each task's CPUs (it no longer inherits sbatch's --cpus-per-task)
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    assert re.search(r"^srun .*--cpus-per-task=1 ", script.read_text(), re.M), script.read_text()
    # the launcher's output stays readable on a cluster without accounting (no sacct warnings)
    assert "sacct" not in out + err
    assert re.search(rf"^slurm: job 0 \({array}_0\) completed, val/acc_best=", out, re.M), out


def test_optuna_sweep_through_the_cluster(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    out, err = _finish(_sweep(tmp_path, "hparams_search=digits_resnet", "hydra.sweeper.n_trials=3", *TINY))
    assert "sweep summary" in out, out[-3000:] + err[-3000:]
    summary = _summary(sweep)
    assert [job["status"] for job in summary["jobs"]] == ["completed"] * 3, summary
    assert summary["best"] is not None
    lrs = {_assert_ranks_run_their_job(sweep / str(job))["task"]["optimizer"]["lr"] for job in range(3)}
    assert len(lrs) == 3 and 0.1 not in lrs, "a trial trained with the config's default lr"
    # Optuna asks one trial at a time (n_jobs=1): three submissions
    assert len([p for p in (sweep / ".submitit").iterdir() if p.is_dir()]) == 3


def _wait_for_checkpoint(job_dir: Path, proc: subprocess.Popen, deadline_s: float = 300) -> int:
    last = job_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return int(torch.load(last, weights_only=True)["epoch"])
        except Exception:  # not written yet, or being written
            time.sleep(0.1)
    pytest.fail(f"{last} never appeared")


def test_preempted_and_timed_out_jobs_resume_to_the_uninterrupted_result(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    # three copies of one run: job 0 is requeued (preemption), job 1 gets the signal SLURM sends
    # before the time limit (submitit checkpoints and requeues it), job 2 runs uninterrupted
    epochs = 6
    proc = _sweep(
        tmp_path,
        "tags=[requeued],[signalled],[reference]",
        "seed=5",
        f"trainer.max_epochs={epochs}",
        "trainer.limit_train_batches=8",
        "callbacks.early_stopping=null",
        "trainer.deterministic=true",
    )
    array = _array(sweep)
    for job, stop in ((0, ["scontrol", "requeue"]), (1, ["scancel", "--signal=USR2"])):
        _wait_for_checkpoint(sweep / str(job), proc)
        subprocess.run([*stop, f"{array}_{job}"], check=True, timeout=30)
    out, err = _finish(proc)
    assert "sweep summary" in out, out[-3000:] + err[-3000:]
    summary = _summary(sweep)
    assert [job["status"] for job in summary["jobs"]] == ["completed"] * 3, summary

    reference = json.loads((sweep / "2" / "metrics.json").read_text())
    reference_log = (sweep / "2" / "csv" / "metrics.csv").read_text()
    for job in (0, 1):
        log = _task_log(sweep, array, job, 0)
        # the first attempt stopped before fit ended: fit ends once in the log, in the resumed attempt
        assert log.count("`Trainer.fit` stopped") == 1, f"job {job} was not stopped mid-training"
        assert f"resuming from {sweep / str(job) / 'checkpoints' / 'last.ckpt'}" in log, log[-3000:]
        # saved at the step the signal came in (run/preemption.py), not only at the last epoch's end
        saved = re.search(r"saved \S+last\.ckpt at step \d+ \(epoch \d+, batch \d+ of 8; stop signal\)", log)
        assert saved, f"job {job} saved no checkpoint when it was stopped: {log[-3000:]}"
        got = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert got == reference, f"job {job} resumed to {got}, uninterrupted {reference}"
        # the CSV log has every epoch once, as the uninterrupted run's: none lost, none twice
        assert (sweep / str(job) / "csv" / "metrics.csv").read_text() == reference_log
        assert f"job {job} ({array}_{job}) requeued (restart 1)" in out, out
    assert "DUE TO JOB REQUEUE" in _task_log(sweep, array, 0, 0)
    assert "Caught signal SIGUSR2" in _task_log(sweep, array, 1, 0)
    for job, tag in enumerate(["requeued", "signalled", "reference"]):
        _assert_ran_as_two_slurm_tasks(sweep, array, job, f"tags=[{tag}]")


def test_a_job_slurm_can_never_start_is_refused_in_one_line(cluster, tmp_path):
    proc = _sweep(tmp_path, *TINY, "seed=1,2", cpus=4096)
    _, err = _finish(proc, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "PartitionConfig" in lines[0] and "cpus_per_task" in lines[0], err
    assert "Traceback" not in err
    array = _array(tmp_path / "sweep", deadline_s=1)
    queued = subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True, check=True).stdout
    assert queued.strip() == "", f"jobs left in the queue: {queued}"


def test_a_submission_slurm_refuses_is_one_line(cluster, tmp_path):
    proc = _sweep(tmp_path, *TINY, "hydra.launcher.partition=no_such_partition", "seed=1,2")
    _, err = _finish(proc, timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]], err
    assert err.startswith("error: SLURM refused the sweep:") and "no_such_partition" in err, err


def test_optuna_trials_run_two_at_once_on_the_cluster_and_are_pruned_there(cluster, tmp_path):
    """n_jobs=2: two one-CPU trials in flight at once; the jobs, SLURM's processes, report to the
    study through its journal and the hopeless ones are pruned there."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lightsuite.train", f"--config-dir={HERE / 'launch' / 'user_conf'}"]
    cmd += ["hparams_search=hopeless", *FAST, "hydra/launcher=slurm", "hydra.launcher.timeout_min=20"]
    cmd += ["hydra.launcher.cpus_per_task=1", "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    cmd += ["trainer.max_epochs=4", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
    cmd += [
        "trainer.limit_test_batches=1",
        "+trainer.num_sanity_val_steps=0",
        "callbacks.early_stopping=null",
    ]
    env = {**os.environ, "LIGHTSUITE_ROOT": str(tmp_path), **ENV}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = _finish(proc)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    summary = _summary(sweep)
    statuses = [job["status"] for job in summary["jobs"]]
    assert statuses[:2] == ["completed"] * 2 and "pruned" in statuses[2:], summary
    # one submission per trial, two of them running at the same time
    assert len(re.findall(r"^slurm: submitted 1 job\(s\) as array", out, re.M)) == 4
    # SLURM's own record of when each job ran (kept for MinJobAge after it ends)
    spans = [_ran(p.name) for p in sorted((sweep / ".submitit").iterdir()) if p.name.isdigit()]
    assert len(spans) == 4
    assert any(a0 < b1 and a1 < b0 for i, (a0, b0) in enumerate(spans) for a1, b1 in spans[i + 1 :]), spans
    # the pruned job said so in its own SLURM log, on the node
    pruned = next(job for job in summary["jobs"] if job["status"] == "pruned")
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_0_log.err"))
    assert f"optuna: trial {pruned['job']} pruned after {pruned['pruned_at_epoch'] + 1} epochs" in logs


def _ran(job_id: str) -> tuple[str, str]:
    """A finished job's StartTime and EndTime, as `scontrol show job` gives them (ISO, to the second)."""
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30
    )
    fields = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
    return fields["StartTime"], fields["EndTime"]

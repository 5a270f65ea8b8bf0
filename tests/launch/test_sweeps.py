"""Sweeps that survive failing trials, their summaries, and submitit's local and SLURM launchers."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import submitit
import yaml
from conftest import FAST, ONE_TINY_EPOCH, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from sweep_files import SummarySnapshots

from lightsuite import CONFIG_DIR
from lightsuite.reporting.runs import DONE, FAILED, find_jobs
from lightsuite.reporting.tables import best_job

HERE = Path(__file__).parent
TINY = [*FAST, *ONE_TINY_EPOCH]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_optuna_sweep_records_failed_trials_and_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        f"--config-dir={HERE / 'user_conf'}",
        "hparams_search=flaky",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    jobs = summary["jobs"]
    assert [job["job"] for job in jobs] == [0, 1, 2, 3], "a failed trial ended the sweep"
    failed = [job for job in jobs if job["status"] == "failed"]
    done = [job for job in jobs if job["status"] == "completed"]
    assert failed and done, jobs
    for job in failed:
        assert "task.optimizer.lr=1e+30" in job["overrides"]
        assert job["objective"] is None and "train/loss became" in job["error"]
        assert not (Path(job["run_dir"]) / "metrics.json").exists()
    for job in done:
        metrics = json.loads((Path(job["run_dir"]) / "metrics.json").read_text())
        assert job["objective"] == metrics["val/acc_best"]
    assert summary["best"] == max(done, key=lambda job: job["objective"])
    assert (summary["completed"], summary["failed"]) == (len(done), len(failed))
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert [row["status"] for row in rows] == [job["status"] for job in jobs]
    assert proc.stdout.strip().splitlines()[-1] == f"sweep summary: {sweep / 'sweep_summary.json'}"


def test_unknown_search_preset_lists_the_valid_ones(tmp_path):
    proc = run_cli("lightsuite.train", "hparams_search=nope", cwd=tmp_path, env=ENV)
    assert proc.returncode == 1
    assert "digits_resnet" in proc.stderr


@pytest.mark.slow
def test_multirun_through_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "-m",
        "hydra/launcher=local",
        "task.optimizer.lr=1e30,0.1",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((sweep / "1" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    # the jobs ran in submitit's own processes, with their logs in the sweep dir
    assert list((sweep / ".submitit").rglob("*_result.pkl"))
    # the diverged job's failure crossed submitit's pickling into its status
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["failed", "completed"]
    assert "train/loss became" in summary["jobs"][0]["error"]


def _launcher(overrides: list[str]) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def _sbatch(params: dict, folder: Path) -> str:
    """The sbatch script submitit would submit for these launcher params (the plugin's mapping)."""
    executor = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=3)
    base = {"submitit_folder", "max_num_timeout", "_target_", "stderr_to_stdout"}
    common = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name"}
    executor.update_parameters(
        **{
            k if k in common else f"slurm_{k}": v
            for k, v in params.items()
            if k not in base | {"stderr_to_stdout"}
        }
    )
    return executor._executor._make_submission_file_text("python -c pass", "uid")


def test_slurm_preset_asks_for_the_trainers_resources(tmp_path, monkeypatch):
    # submitit's SLURM executor only checks that `srun` exists; the sbatch text is submitit's own
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    params = _launcher(
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.accelerator=gpu",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.account=proj42",
        ]
    )
    script = _sbatch(params, tmp_path)
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=90",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
    ):
        assert line in script.splitlines(), f"{line} missing from:\n{script}"

    cpu = _sbatch(_launcher(["hydra/launcher=slurm", "trainer=ddp_cpu", "trainer.devices=3"]), tmp_path)
    assert "#SBATCH --ntasks-per-node=3" in cpu.splitlines()
    assert not any("gpus" in line for line in cpu.splitlines()), "a CPU job asked for GPUs"


@pytest.mark.parametrize(("direction", "best_job"), [("maximize", 1), ("minimize", 2)])
def test_summary_ranks_completed_jobs_in_the_objectives_direction(tmp_path, direction, best_job):
    from lightsuite.io import STATUS_FILE
    from lightsuite.launch.sweeps import write_summary

    jobs = [("completed", 0.5), ("completed", 0.9), ("completed", 0.2), ("failed", None), ("failed", 0.99)]
    for num, (status, objective) in enumerate(jobs):
        job_dir = tmp_path / str(num)
        job_dir.mkdir()
        record = {"job": num, "overrides": [f"seed={num}"], "status": status, "objective": objective}
        (job_dir / STATUS_FILE).write_text(json.dumps({**record, "run_dir": str(job_dir), "error": None}))
    summary = json.loads(write_summary(tmp_path, "val/acc_best", direction).read_text())
    assert summary["best"]["job"] == best_job
    assert (summary["completed"], summary["failed"]) == (3, 2)
    rows = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert [row["overrides"] for row in rows] == [f"seed={n}" for n in range(5)]


def _the_sweep_dir(tmp_path: Path) -> Path:
    """The one sweep dir, where the default `hydra.sweep.dir` puts it: outputs/multirun/<date>/<time>."""
    (summary,) = tmp_path.glob("outputs/multirun/*/*/sweep_summary.json")
    return summary.parent


NOT_LOGGED = "optimized_metric='val/objective' was not logged"


@pytest.mark.slow
def test_default_sweep_dir_summary_after_every_job_and_odd_objectives_fail(multirun, tmp_path):
    caught = multirun(
        "-m",
        "experiment=odd_objectives",
        "seed=1,2,3,4",
        *TINY,
        f"+hydra.callbacks.snapshots._target_={SummarySnapshots.__module__}.SummarySnapshots",
        f"+hydra.callbacks.snapshots.root={tmp_path / 'outputs'}",
    )
    assert not [str(w.message) for w in caught if "Callback" in str(w.message)]
    sweep = _the_sweep_dir(tmp_path)
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    jobs = summary["jobs"]
    # job k logged values[k] = NaN, +inf, nothing, 0.5
    assert [(job["status"], job["objective"]) for job in jobs] == [
        ("failed", None),
        ("failed", None),
        ("failed", None),
        ("completed", 0.5),
    ]
    assert [job["error"] for job in jobs[:2]] == ["val/objective is nan", "val/objective is inf"]
    assert jobs[2]["error"].startswith(NOT_LOGGED) and jobs[3]["error"] is None
    assert summary["best"]["job"] == 3 and (summary["completed"], summary["failed"]) == (1, 3)

    # written as it goes: each job found the jobs before it, as they were recorded at the end
    assert SummarySnapshots.seen[0] is None
    for num in (1, 2, 3):
        assert SummarySnapshots.seen[num]["jobs"] == jobs[:num], f"summary before job {num}"
    assert SummarySnapshots.seen[3]["best"] is None, "a failed job was ranked"

    # the report agrees: the same three failed with their reasons, the same best
    report = find_jobs([sweep])
    assert [job.status for job in report] == [FAILED, FAILED, FAILED, DONE]
    assert [job.error for job in report] == [job["error"] for job in jobs]
    assert best_job(report, "val/objective")[0].name == "3"


@pytest.mark.slow
def test_optuna_fails_nan_and_infinite_objectives_and_never_ranks_them(multirun, tmp_path):
    caught = multirun("hparams_search=odd_objectives", *TINY)
    assert not [str(w.message) for w in caught if "Callback" in str(w.message)]
    sweep = _the_sweep_dir(tmp_path)
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["direction"] == "minimize"
    assert [(job["status"], job["error"]) for job in summary["jobs"]] == [
        ("failed", "val/objective is nan"),
        ("failed", "val/objective is -inf"),
        ("completed", None),
    ]
    assert summary["best"]["job"] == 2 and summary["best"]["objective"] == 0.25
    # Optuna's own record: -inf, the smallest value, was never told to the study as a result
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == 0.25
    report = find_jobs([sweep])
    assert [job.status for job in report] == [FAILED, FAILED, DONE]
    assert best_job(report, "val/objective")[0].name == "2"


def _record(status: str, objective: float | None, error: str | None = None) -> dict:
    return {"status": status, "objective": objective, "error": error}


@pytest.mark.parametrize(
    ("record", "final", "failed"),
    [
        # the sweep failed a job whose metrics.json holds its NaN (written null) or no objective
        (_record("failed", None, "val/acc_best is nan"), {"val/acc_best": math.nan}, True),
        (_record("failed", None, "not logged"), {"test/acc": 0.5}, True),
        # a later run into the same dir wrote a finite objective: the old record is not about it
        (_record("failed", None, "val/acc_best is nan"), {"val/acc_best": 0.7}, False),
        (_record("completed", 0.7), {"val/acc_best": 0.7}, False),
        (_record("failed", 0.7, "crashed after testing"), {"val/acc_best": 0.7}, True),
        (None, {"val/acc_best": 0.7}, False),
    ],
)
def test_a_finished_jobs_sweep_failure_counts_only_for_its_own_metrics(record, final, failed):
    from lightsuite.reporting.runs import sweep_failure

    reason = sweep_failure(record, final, "val/acc_best")
    assert reason == (record["error"] if failed else None)


@pytest.mark.slow
def test_a_finished_sweep_run_again_records_every_job_completed_as_before(multirun, tmp_path, capsys):
    """The README's way to resume a sweep: the same command again. Finished jobs stay completed."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2", *TINY, f"hydra.sweep.dir={sweep}"]
    multirun(*args)
    first = json.loads((sweep / "sweep_summary.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.json")}
    capsys.readouterr()
    multirun(*args)
    again = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in first["jobs"]] == ["completed", "completed"]
    assert [(j["status"], j["objective"]) for j in again["jobs"]] == [
        (j["status"], j["objective"]) for j in first["jobs"]
    ]
    assert capsys.readouterr().err.count("has finished") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.json")} == stamps

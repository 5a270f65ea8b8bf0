"""What the Optuna sweeper knows of a trial's job: how it ended, and whether it still runs.

The job's own `job_status.json` is the first word on how it ended. When there is none (a job that
died in its last moments, a file system slow to show it), the study's storage and the launcher's
result say the rest; a job recorded completed without a finite objective is a failure, never a
result.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from lightsuite.launch.sweeps import job_error, read_job_status

# squeue states of a job that is still there (or coming back)
ALIVE = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
}


def settled_record(
    run_dir: Path, number: int, overrides: list[str], ret: Any, trial: Any, objective: str
) -> dict[str, Any]:
    """The job's record, as the study is told: completed (with a finite objective), pruned or failed."""
    record = read_job_status(run_dir, number)
    if record is None:
        record = {"job": number, "overrides": overrides, "status": "failed", "objective": None}
        record.update(
            run_dir=str(run_dir), error=job_error(ret) or "the job ended without writing its status"
        )
        value = ret.return_value if isinstance(ret, JobReturn) and ret.status == JobStatus.COMPLETED else None
        if "pruned_at_epoch" in trial.user_attrs:
            record.update(status="pruned", error=None, pruned_at_epoch=trial.user_attrs["pruned_at_epoch"])
        elif isinstance(value, (int, float)) and math.isfinite(value):
            record.update(status="completed", objective=float(value), error=None)
    value = record.get("objective")
    if record["status"] == "completed" and not (isinstance(value, (int, float)) and math.isfinite(value)):
        record.update(
            status="failed", objective=None, error=record.get("error") or f"{objective} was not reported"
        )
    return record


def still_running(job: dict[str, Any] | None) -> str | None:
    """Where the job of a trial left running still runs (a SLURM job id, a process here), or None."""
    if not job:
        return None
    if job.get("slurm_job_id"):
        try:
            shown = subprocess.run(
                ["squeue", "-h", "--states=all", "-j", str(job["slurm_job_id"]), "-o", "%T"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        states = set(shown.stdout.split())
        return f"SLURM job {job['slurm_job_id']} (scancel {job['slurm_job_id']})" if states & ALIVE else None
    if job.get("host") == socket.gethostname() and job.get("pid") and job["pid"] != os.getpid():
        try:
            os.kill(int(job["pid"]), 0)
        except (OSError, ValueError):
            return None
        return f"process {job['pid']} on this machine (kill {job['pid']})"
    return None

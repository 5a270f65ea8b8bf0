"""SLURM, the job side: each SLURM task of a job this suite submitted is one DDP rank.

Lightning's SLURMEnvironment starts nothing (no re-run of the command line). submitit owns
requeueing (it signals before the time limit; `scontrol requeue` and preemption restart the job), so
Lightning's own SLURM requeue handler is switched off, and a task uses the CPUs SLURM gave it
(`--cpus-per-task`) as its thread count.
"""

from __future__ import annotations

import os
from typing import Any

from lightsuite.launch.ddp import cpu_count


def in_slurm_task() -> bool:
    """Whether this process is a task of a job this launcher submitted (submitit on SLURM).

    Not a plain sbatch script or an interactive srun shell: those keep Lightning's own behaviour.
    """
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_PROCID" in os.environ


def task_plugins() -> list[Any]:
    """Trainer plugins for a SLURM task: SLURM's ranks, without Lightning's own requeue handler.

    Also sets this task's threads to its `--cpus-per-task`: Lightning would divide the node's cores
    by the tasks per node, which oversubscribes a node shared with other jobs.
    """
    if not in_slurm_task():
        return []
    import torch
    from lightning_fabric.plugins.environments import SLURMEnvironment

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, min(int(cpus), cpu_count()))  # a task bound to fewer cores gets no more threads
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]


def slurm_job_id() -> str:
    """This task's job id as squeue shows it (`<array>_<index>` for an element of a job array)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", "")

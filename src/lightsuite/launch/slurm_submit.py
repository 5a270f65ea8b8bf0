"""SLURM, the submitting side (`hydra/launcher=slurm`): the sweep that submits and watches its jobs.

hydra-submitit-launcher submits a sweep as one job array
and waits on submitit, which polls `sacct`. On a cluster without an accounting database every poll
logs a warning, and a job that ends without a result (cancelled, killed, out of memory) raises out
of the launcher and ends the whole sweep with a traceback. `launch_sweep` submits the same array and
watches it with `squeue` (finished jobs stay listed for the cluster's MinJobAge): one line per state
change, a one-line refusal of a job SLURM can never start, and a job that ends without a result
recorded as failed in the sweep summary while the others complete.

What the watcher decides from what it sees (squeue's rows, result files, the time) is a plain
function, `slurm_watch.advance`; here is the looking, printing and cancelling around it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

from lightsuite.errors import ConfigError
from lightsuite.launch.slurm_watch import (
    SQUEUE_FORMAT,
    Outcome,
    Row,
    Watched,
    advance,
    failure,
    given_up,
    parse_squeue,
    trace_line,
)

# trainer settings a SLURM sweep asks resources for, once for all its jobs
RESOURCE_KEYS = ("trainer", "trainer.devices", "trainer.num_nodes", "trainer.accelerator")


@dataclass
class SweepJob:
    """One submitted job: its number, overrides, submitit handle and result, and what is known of it."""

    number: int
    overrides: list[str]
    handle: Any
    result: JobReturn | None = None
    seen: Watched = field(init=False)

    def __post_init__(self) -> None:
        self.seen = Watched(self.number, self.slurm_id, time.monotonic())

    @property
    def slurm_id(self) -> str:
        return str(self.handle.job_id)

    def result_ready(self) -> bool:
        paths = self.handle.task(0).paths
        # a chmod refreshes a network file system's cached view of the folder (as submitit does)
        with contextlib.suppress(OSError):
            paths.folder.chmod(paths.folder.stat().st_mode)
        return bool(paths.result_pickle.exists())


def queue_states(job_ids: Sequence[str]) -> dict[str, Row] | None:
    """squeue's row of each job or array element; None when squeue did not answer. Jobs SLURM has
    already forgotten (finished before MinJobAge) are absent.
    """
    ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    cmd = ["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(ids)}", SQUEUE_FORMAT]
    # SQUEUE_USERS, SQUEUE_PARTITION, ... in the user's environment would hide the sweep's jobs
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQUEUE_")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        # every id asked for is forgotten: an answer, not a failure
        return {} if "Invalid job id" in proc.stderr else None
    return parse_squeue(proc.stdout)


def _say(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def _asked(params: dict[str, Any]) -> str:
    """What one job asks per node, in words, for the refusal message."""
    parts = [f"{params.get('tasks_per_node', 1)} tasks x {params.get('cpus_per_task') or 1} CPUs"]
    if params.get("gpus_per_node"):
        parts.append(f"{params['gpus_per_node']} GPUs")
    if params.get("mem_gb"):
        parts.append(f"{params['mem_gb']} GB")
    nodes = params.get("nodes", 1)
    return ", ".join(parts) + (f", on {nodes} nodes" if nodes and int(nodes) > 1 else "")


def _executor(params: dict[str, Any]) -> Any:
    """submitit's SLURM executor with the launcher's parameters (the plugin's own mapping)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(params)
    folder = params.pop("submitit_folder")
    max_num_timeout = params.pop("max_num_timeout", 0)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    try:
        executor = submitit.AutoExecutor(
            folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout
        )
    except RuntimeError as exc:
        raise ConfigError(
            f"hydra/launcher=slurm found no SLURM here ({str(exc).splitlines()[0]}): submit from a "
            "cluster's login node, or start a one-node cluster on this machine: scripts/slurm-local.sh up"
        ) from None
    srun_args = list(params.get("srun_args") or [])
    if params.get("cpus_per_task") and not any(a.startswith(("-c", "--cpus-per-task")) for a in srun_args):
        # srun does not pass sbatch's --cpus-per-task on to the tasks since SLURM 22.05
        params["srun_args"] = [*srun_args, f"--cpus-per-task={params['cpus_per_task']}"]
    try:
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    except (NameError, AssertionError, ValueError, TypeError) as exc:  # submitit's checks
        raise ConfigError(f"hydra.launcher: {' '.join(str(exc).split())[:400]}") from None
    return executor


def _submission_error(exc: BaseException) -> ConfigError:
    """sbatch's own words for a refused submission, without submitit's wrapping."""
    lines = [line.strip() for line in str(exc).splitlines()]
    said = [line for line in lines if "error:" in line] or [line for line in lines if line][-1:]
    if "Unable to contact slurm controller" in str(exc):
        return ConfigError(
            f"SLURM's controller does not answer ({' '.join(said)}): check that the cluster is up "
            "(sinfo); on this machine, start one with scripts/slurm-local.sh up"
        )
    return ConfigError(
        f"SLURM refused the sweep: {' '.join(said)}; check hydra.launcher.partition, account, qos and "
        "the resources asked (hydra.launcher.*, trainer.devices, trainer.num_nodes)"
    )


def submit(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[SweepJob]:
    """Submit every job as one SLURM job array, the way hydra-submitit-launcher does."""
    from submitit.core.utils import FailedJobError

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in launcher.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(launcher.config.hydra.sweep.mode), 8))
    executor = _executor(launcher.params)
    calls = [
        (
            list(overrides),
            "hydra.sweep.dir",
            initial_job_idx + i,
            f"job_id_for_{initial_job_idx + i}",
            Singleton.get_state(),
        )
        for i, overrides in enumerate(job_overrides)
    ]
    try:
        # submitit prints sbatch's complaint before raising it: say it once, in our words
        with contextlib.redirect_stderr(io.StringIO()):
            # map_array(fn, overrides_list, key_list, ...): one argument list per parameter
            handles = executor.map_array(launcher, *zip(*calls, strict=True))
    except FailedJobError as exc:
        raise _submission_error(exc) from None
    jobs = [
        SweepJob(number, overrides, handle)
        for (overrides, _, number, _, _), handle in zip(calls, handles, strict=True)
    ]
    array = jobs[0].slurm_id.split("_")[0] if jobs else "?"
    _say(f"slurm: submitted {len(jobs)} job(s) as array {array}; logs in {sweep_dir / '.submitit'}")
    for job in jobs:
        _say(f"slurm:   job {job.number} ({job.slurm_id}): {' '.join(filter_overrides(job.overrides))}")
    return jobs


def launch_sweep(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Submit the jobs, watch them until each has a result or has ended, return their JobReturns.

    A job that failed, or ended without a result, returns None (what a failed job of
    `keep_sweeping` returns: Optuna records a failed trial) with a failed `job_status.json`, so the
    sweep goes on. A job SLURM can never start cancels the array: exit status 1 and the fix in one
    line. Ctrl-C stops watching and leaves the jobs running.
    """
    from lightsuite.errors import exit_on_user_error

    with exit_on_user_error():
        check_sweep(launcher.params, job_overrides)
        jobs = submit(launcher, job_overrides, initial_job_idx)
        try:
            watch(jobs, launcher.params, launcher.config.get("optimized_metric"))
        except KeyboardInterrupt:
            array = jobs[0].slurm_id.split("_")[0]
            _say(
                f"slurm: stopped watching; the jobs go on (squeue -j {array}; cancel with scancel {array}) "
                f"and write into {launcher.config.hydra.sweep.dir}",
                err=True,
            )
            raise SystemExit(130) from None
        returns = [job.result if job.result is not None else _failed_return(launcher, job) for job in jobs]
    for ret in returns:
        if ret.status == JobStatus.FAILED:
            # an exception the job did not turn into a user error (its traceback is in the job's log
            # and its job_status.json says failed): fail this job, not the sweep
            ret.status = JobStatus.COMPLETED
            ret.return_value = None
    return returns


def check_sweep(params: dict[str, Any], job_overrides: Sequence[Sequence[str]]) -> None:
    """Refuse, before submitting, a sweep that cannot work on SLURM as configured.

    The launcher asks SLURM for one set of resources, resolved from the sweep's config: a job of a
    sweep over `trainer.devices` would get the first value's tasks and fail inside Lightning. And a
    time-limit signal due before the job starts would requeue every job at once.
    """
    timeout_s = 60 * (params.get("timeout_min") or 0)
    delay_s = params.get("signal_delay_s") or 0
    if timeout_s and delay_s >= timeout_s:
        raise ConfigError(
            f"hydra.launcher.signal_delay_s={delay_s} is not shorter than timeout_min "
            f"({timeout_s // 60} min): every job would be signalled to requeue at once; lower it"
        )
    seen: dict[str, set[str]] = {}
    for overrides in job_overrides:
        for override in overrides:
            key, _, value = override.partition("=")
            if key.lstrip("+~") in RESOURCE_KEYS:
                seen.setdefault(key.lstrip("+~"), set()).add(value)
    varying = {key: values for key, values in seen.items() if len(values) > 1}
    if varying:
        key, values = next(iter(varying.items()))
        raise ConfigError(
            f"{key} differs between the jobs of this sweep ({', '.join(sorted(values))}), but a SLURM "
            f"sweep asks for one set of resources: run one sweep per value of {key}"
        )


def watch(
    jobs: list[SweepJob], params: dict[str, Any], objective: str | None = None, poll_s: float = 1.0
) -> None:
    """Poll result files every `poll_s` and squeue every few seconds until every job is settled."""
    start = time.monotonic()
    last_queue = float("-inf")
    silent = False
    asked = _asked(params)
    while True:
        now = time.monotonic()
        for job in jobs:
            if not job.seen.collected and job.result_ready():
                _collect(job, objective, now)
        waiting = [job for job in jobs if job.result is None and not given_up(job.seen, now)]
        if not waiting:
            return
        # every 2 s for the first two minutes, then every 15 s: polite to a busy controller
        if now - last_queue >= (2.0 if now - start < 120 else 15.0):
            last_queue = now
            states = queue_states([job.slurm_id for job in waiting])
            if states is None and not silent:
                _say("slurm: squeue does not answer; waiting for the jobs' result files", err=True)
            silent = states is None
            refused = _observe(jobs, waiting, states, now, asked) if states is not None else None
            if refused:
                _cancel(refused[0])
                raise ConfigError(refused[1])
        time.sleep(poll_s)


def _observe(
    jobs: list[SweepJob], waiting: list[SweepJob], states: dict[str, Row], now: float, asked: str
) -> tuple[SweepJob, str] | None:
    """Give each waiting job its squeue row (`advance` decides): the first job refused and why, if any."""
    for job in waiting:
        started = any(other.seen.started for other in jobs)
        step = advance(job.seen, now, states.get(job.slurm_id), sweep_started=started, asked=asked)
        job.seen = step.job
        for line in step.lines:
            _say(line)
        if step.refusal:
            return job, step.refusal
    return None


def _collect(job: SweepJob, objective: str | None, now: float) -> None:
    """Read a job's result file, and its job_status.json when it holds a result."""
    try:
        job.result = job.handle.task(0).result()
    except Exception as exc:  # the job failed outside Hydra's job runner
        said = trace_line(str(exc))
        # a cancelled DDP job can leave the error its rank 0 met when a peer vanished (a gloo
        # "connection reset"): the cause is the cancellation, so that is what the job's record says
        row = (queue_states([job.slurm_id]) or {}).get(job.slurm_id)
        if isinstance(row, Row) and row.state.startswith("CANCELLED"):
            said = f"SLURM job {job.slurm_id} ended CANCELLED without a result ({said})"
        outcome = Outcome(error=said)
    else:
        outcome = Outcome(status=_job_status(job.result))
    step = advance(job.seen, now, result=outcome, objective=objective)
    job.seen = step.job
    for line in step.lines:
        _say(line)


def _job_status(result: JobReturn | None) -> dict[str, Any]:
    output_dir = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result else None
    if output_dir:
        with contextlib.suppress(OSError, ValueError):  # not written: the job died in its callback
            return json.loads((Path(output_dir) / "job_status.json").read_text())
    return {}


def _cancel(job: SweepJob) -> None:
    """Cancel the pending elements of the job's array (a running one is left alone)."""
    array = job.slurm_id.split("_")[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["scancel", "--state=PENDING", array], capture_output=True, timeout=60, check=False)


def _failed_return(launcher: Any, job: SweepJob) -> JobReturn:
    """The JobReturn of a job that ended without a result, after recording it as failed."""
    from lightsuite.io import STATUS_FILE
    from lightsuite.launch.sweeps import _direction, record_job_status, write_summary

    if not job.seen.collected and job.result_ready():  # a last look, after the grace
        _collect(job, launcher.config.get("optimized_metric"), time.monotonic())
        if job.result is not None:
            return job.result
    run_dir = _run_dir(launcher, job)
    recorded = {}
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((run_dir / STATUS_FILE).read_text())
    error = failure(job.seen, recorded, str(job.handle.task(0).paths.stderr))
    if error is not None:
        _say(f"error: job {job.number}: {error}", err=True)
        record = {"job": job.number, "overrides": list(job.overrides), "status": "failed"}
        record_job_status(run_dir, {**record, "objective": None, "run_dir": str(run_dir), "error": error})
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    write_summary(sweep_dir, launcher.config.get("optimized_metric"), _direction(launcher.config))
    ret = JobReturn(overrides=list(job.overrides), status=JobStatus.COMPLETED)
    ret.return_value = recorded.get("objective") if error is None else None
    return ret


def _run_dir(launcher: Any, job: SweepJob) -> Path:
    """The job's dir, as the job itself would have named it (`hydra.sweep.dir`/`subdir`)."""
    from lightsuite.launch.sweeps import job_dir

    return job_dir(launcher.hydra_context.config_loader, launcher.config, list(job.overrides), job.number)

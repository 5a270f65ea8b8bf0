"""`hydra/launcher=parallel`: `n_parallel` jobs of a sweep at once on this machine, each in its own
fresh interpreter, pinned to its own GPUs and cores.

A pool of `n_parallel` slots is planned once: slot i owns a block of `trainer.devices` of the
visible GPUs (for GPU jobs: `CUDA_VISIBLE_DEVICES` in the job) and cores // n_parallel of this
process's cores (`OMP_NUM_THREADS`, and the child's affinity). A job starts as soon as a slot frees;
concurrent `launch` calls (the Optuna sweeper's `n_jobs` trials, one call each) share the pool.
Each child runs Hydra's `run_job` on the job's config (`parallel_job`), so its run dir is the
basic launcher's; its output goes to `<sweep dir>/.parallel/<job>_log.out`. As on SLURM, a failed
job fails alone (recorded in `job_status.json`, returned as None) and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import DictConfig, OmegaConf, open_dict

from lightsuite.errors import ConfigError
from lightsuite.launch.ddp import cpu_count

LOG_DIR = ".parallel"
# the child pins itself to these cores (`parallel_job`): affinity set after a fork would race threads
CORES_ENV = "LIGHTSUITE_PARALLEL_CORES"
POLL_S = 0.1


def check_settings(node: Any) -> int:
    """`hydra.launcher.n_parallel`, checked: a wrong one is one line (read before any job starts)."""
    value = node.get("n_parallel") if node is not None else None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise ConfigError(
            f"hydra.launcher.n_parallel={value} must be an integer at least 1 (the jobs run at once), "
            "e.g. hydra.launcher.n_parallel=2"
        )
    return value


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, as CUDA names them: `CUDA_VISIBLE_DEVICES` when set (its
    entries as given, up to the first `-1`, as CUDA reads it), else the driver's GPUs. Without torch,
    which would initialise CUDA in the launcher's process for nothing."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        names = []
        for name in (part.strip() for part in env["CUDA_VISIBLE_DEVICES"].split(",")):
            if not name or name == "-1":
                break
            names.append(name)
        return names
    with contextlib.suppress(OSError):
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    try:
        shown = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        str(i) for i, line in enumerate(line for line in shown.stdout.splitlines() if line.startswith("GPU"))
    ]


@dataclass(frozen=True)
class Slot:
    """One of the pool's places: its GPUs (None: the job's environment keeps CUDA's as they are),
    its cores (None: not pinned) and its threads."""

    index: int
    gpus: tuple[str, ...] | None
    cores: tuple[int, ...] | None
    threads: int

    def env(self) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        if self.cores is not None:
            env[CORES_ENV] = ",".join(map(str, self.cores))
        return env

    def shown(self) -> str:
        where = f"cores {','.join(map(str, self.cores))}" if self.cores is not None else "any core"
        gpus = f", CUDA_VISIBLE_DEVICES={','.join(self.gpus)}" if self.gpus is not None else ""
        return f"{where} ({self.threads} thread{'s' * (self.threads > 1)}){gpus}"


def gpu_devices(accelerator: Any, devices: Any, gpus: list[str]) -> int:
    """GPUs one job uses: 0 on the CPU (or `auto` with none visible), else its `trainer.devices`."""
    accelerator = str(accelerator)
    if accelerator not in ("gpu", "cuda", "auto") or (accelerator == "auto" and not gpus):
        return 0
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return len(devices)
    if str(devices).lstrip("-").isdigit() and int(devices) >= 1:
        return int(devices)
    if str(devices) in ("auto", "-1"):
        return len(gpus)  # every visible GPU, as Lightning reads it
    raise ConfigError(
        f"trainer.devices={devices} cannot be split between parallel jobs: give a number of GPUs per job"
    )


def plan_slots(
    n_parallel: int, gpus_per_job: int, gpus: list[str], cores: list[int], threads_cap: int | None = None
) -> list[Slot]:
    """The pool: disjoint GPU blocks and core blocks, one per slot. Refuses more GPUs than visible."""
    if gpus_per_job and n_parallel * gpus_per_job > len(gpus):
        raise ConfigError(
            f"hydra.launcher.n_parallel={n_parallel} jobs x trainer.devices={gpus_per_job} GPUs need "
            f"{n_parallel * gpus_per_job}, but {len(gpus)} {'is' if len(gpus) == 1 else 'are'} visible"
            + (f" ({','.join(gpus)})" if gpus else "")
            + ": lower hydra.launcher.n_parallel or trainer.devices, or use the CPU (trainer.accelerator=cpu)"
        )
    share = max(1, len(cores) // n_parallel)
    threads = min(share, threads_cap) if threads_cap else share
    pinned = len(cores) >= n_parallel  # fewer cores than jobs: they share them, unpinned
    return [
        Slot(
            index=i,
            gpus=tuple(gpus[i * gpus_per_job : (i + 1) * gpus_per_job]) if gpus_per_job else None,
            cores=tuple(cores[i * share : (i + 1) * share]) if pinned else None,
            threads=threads,
        )
        for i in range(n_parallel)
    ]


def _threads_cap() -> int | None:
    """A lower `OMP_NUM_THREADS` the user set is kept: the share is a ceiling, not a demand."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def plan(settings: Any, config: DictConfig, jobs: int | None = None) -> tuple[list[Slot], int]:
    """The pool's slots for a sweep of `config`, and the GPUs per job (0: CPU jobs).

    Blocks of the sweep's `trainer.devices` from the visible GPUs, cores // n_parallel of this
    process's cores each; a wrong `n_parallel`, or more GPUs than are visible, is one line. Fewer
    `jobs` than `n_parallel` (a whole sweep, known up front): as many slots as jobs."""
    n_parallel = check_settings(settings)
    if jobs is not None:
        n_parallel = max(1, min(n_parallel, jobs))
    gpus = visible_gpus()
    trainer = config.get("trainer") or {}
    per_job = gpu_devices(trainer.get("accelerator", "cpu"), trainer.get("devices", 1), gpus)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = cores or list(range(cpu_count()))
    return plan_slots(n_parallel, per_job, gpus, cores, _threads_cap()), per_job


class Pool:
    """The slots of one launcher, shared by every `launch` call (threads of the Optuna sweeper)."""

    def __init__(self, slots: list[Slot]) -> None:
        self.free = list(slots)
        self.lock = threading.Lock()

    def take(self) -> Slot | None:
        with self.lock:
            return self.free.pop(0) if self.free else None

    def give(self, slot: Slot) -> None:
        with self.lock:
            self.free.append(slot)
            self.free.sort(key=lambda s: s.index)


@dataclass
class Job:
    """One job of a launch call: its number, overrides and config; once started, its process."""

    number: int
    overrides: list[str]
    config: DictConfig
    run_dir: Path
    log: Path
    spec: Path
    result_file: Path
    proc: subprocess.Popen | None = None
    slot: Slot | None = None
    result: JobReturn | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _say(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


# composing and pickling from several threads at once (the Optuna sweeper's) is done one at a time
_compose_lock = threading.Lock()


class ParallelRun:
    """What `ParallelLauncher.launch` does, kept out of the plugin module (which Hydra imports on
    every command): plan the pool once, then start, watch and collect the jobs of each call."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.pool: Pool | None = None
        self.gpus_per_job = 0
        self.lock = threading.Lock()

    def _pool(self, config: DictConfig, jobs: int) -> Pool:
        with self.lock:
            if self.pool is None:
                # Hydra's basic sweeper hands over the whole sweep at once; others (Optuna) a batch at a time
                basic = "BasicSweeper" in str(config.hydra.sweeper.get("_target_", ""))
                slots, self.gpus_per_job = plan(self.launcher.params, config, jobs if basic else None)
                self.pool = Pool(slots)
            return self.pool

    def job(self, overrides: Sequence[str], number: int) -> Job:
        """Job `number` composed as the basic launcher composes it (its `hydra.job.num` and id)."""
        launcher = self.launcher
        with _compose_lock:
            cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = number
            cfg.hydra.job.num = number
        trainer = cfg.get("trainer") or {}
        gpus = gpu_devices(trainer.get("accelerator", "cpu"), trainer.get("devices", 1), visible_gpus())
        if gpus > self.gpus_per_job or (gpus == 0) != (self.gpus_per_job == 0):
            raise ConfigError(
                f"job {number} ({' '.join(filter_overrides(overrides))}) uses {gpus} GPU(s), but the "
                f"parallel launcher planned {self.gpus_per_job} per job from the sweep's trainer: run one "
                "sweep per trainer.devices / trainer.accelerator"
            )
        # where Hydra's run_job in the child puts it (relative to the same working dir)
        sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()
        run_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        logs = sweep_dir / LOG_DIR
        return Job(
            number=number,
            overrides=list(overrides),
            config=cfg,
            run_dir=run_dir,
            log=logs / f"{number}_log.out",
            spec=logs / f"{number}_job.pkl",
            result_file=logs / f"{number}_result.pkl",
        )

    def start(self, job: Job, slot: Slot) -> None:
        """Write what the child needs (cloudpickle, as submitit does) and start its interpreter."""
        import cloudpickle

        import __main__

        launcher = self.launcher
        main_spec = getattr(__main__, "__spec__", None)
        payload = {
            "hydra_context": launcher.hydra_context,
            "task_function": launcher.task_function,
            "config": job.config,
            "singleton_state": Singleton.get_state(),
            # Lightning's DDP re-runs the parent's command: the child shows itself as that command
            "argv": [os.path.abspath(sys.argv[0]) if main_spec is None else sys.argv[0], *sys.argv[1:]],
            "main_module": main_spec.name if main_spec is not None else None,
            "result_file": str(job.result_file),
        }
        job.spec.parent.mkdir(parents=True, exist_ok=True)
        job.result_file.unlink(missing_ok=True)
        with _compose_lock:
            job.spec.write_bytes(cloudpickle.dumps(payload))
        env = {**os.environ, **slot.env()}
        with job.log.open("w") as log:
            job.proc = subprocess.Popen(
                [sys.executable, "-m", "lightsuite.launch.parallel_job", str(job.spec)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        job.slot = slot
        shown = " ".join(filter_overrides(job.overrides)) or "(no overrides)"
        _say(f"parallel: job {job.number} (pid {job.proc.pid}) started on {slot.shown()}: {shown}")

    def finish(self, job: Job) -> None:
        """Read the child's JobReturn; a child that ended without one is recorded as failed."""
        import cloudpickle

        from lightsuite.launch.slurm_watch import _said
        from lightsuite.launch.sweeps import _direction, read_job_status, record_job_status, write_summary

        code = job.proc.returncode
        with contextlib.suppress(OSError, EOFError, ValueError, AttributeError, ImportError):
            job.result = cloudpickle.loads(job.result_file.read_bytes())
        record = read_job_status(job.run_dir, job.number) or {}
        name = f"parallel: job {job.number} (pid {job.proc.pid})"
        if job.result is None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            error = f"its process {how} without a result; its log: {job.log}"  # as SLURM's failure()
            if record.get("status") != "completed":
                record = {
                    "job": job.number,
                    "overrides": job.overrides,
                    "status": "failed",
                    "objective": None,
                }
                record.update(run_dir=str(job.run_dir), error=error)
                record_job_status(job.run_dir, record)
            config = self.launcher.config
            write_summary(
                Path(str(config.hydra.sweep.dir)), config.get("optimized_metric"), _direction(config)
            )
            job.result = JobReturn(overrides=job.overrides, status=JobStatus.COMPLETED)
            job.result.return_value = record.get("objective")
        elif job.result.status == JobStatus.FAILED and record.get("status") != "failed":
            from lightsuite.launch.sweeps import job_error

            record = {**record, "status": "failed", "error": job_error(job.result)}
        job.record = record
        said = _said(record, self.launcher.config.get("optimized_metric")) if record else "done"
        if record.get("status") == "failed":
            _say(f"{name} {said}" + ("" if str(job.log) in said else f"; its log: {job.log}"), err=True)
        else:
            _say(f"{name} {said}")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        """Run the jobs in the pool's slots, each starting as one frees; their JobReturns in order."""
        config = self.launcher.config
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
        pool = self._pool(config, len(job_overrides))
        jobs = [self.job(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
        waiting, running = list(jobs), []
        try:
            while waiting or running:
                while waiting:
                    slot = pool.take()
                    if slot is None:
                        break
                    job = waiting.pop(0)
                    try:
                        self.start(job, slot)
                    except BaseException:
                        pool.give(slot)
                        raise
                    running.append(job)
                time.sleep(POLL_S)
                for job in [job for job in running if job.proc.poll() is not None]:
                    running.remove(job)
                    pool.give(job.slot)
                    self.finish(job)
        except KeyboardInterrupt:
            self._stop(running)
            raise
        returns = [job.result for job in jobs]
        for ret in returns:
            if ret.status == JobStatus.FAILED:
                # an exception the job did not turn into a user error (its traceback is in the job's
                # log and its job_status.json says failed): fail this job, not the sweep
                ret.status = JobStatus.COMPLETED
                ret.return_value = None
        if len(jobs) > 1:
            self._summary(jobs)
        return returns

    def _summary(self, jobs: list[Job]) -> None:
        failed = [job for job in jobs if job.record.get("status") == "failed"]
        counts = {}
        for job in jobs:
            status = job.record.get("status", "done")
            counts[status] = counts.get(status, 0) + 1
        shown = ", ".join(f"{n} {status}" for status, n in counts.items())
        _say(f"parallel: {len(jobs)} jobs ran, {shown}")
        for job in failed:
            error = str(job.record.get("error"))
            log = "" if str(job.log) in error else f"; its log: {job.log}"
            _say(f"parallel:   job {job.number} failed: {error}{log}", err=True)

    def _stop(self, running: list[Job]) -> None:
        """Ctrl-C: the running children are stopped (the terminal's interrupt reached them too)."""
        for job in running:
            with contextlib.suppress(OSError):
                job.proc.terminate()
        deadline = time.monotonic() + 10
        for job in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if job.proc.poll() is None:
                job.proc.kill()
        if running:
            numbers = ", ".join(str(job.number) for job in running)
            _say(
                f"parallel: stopped; job(s) {numbers} were stopped (logs in {running[0].log.parent})",
                err=True,
            )

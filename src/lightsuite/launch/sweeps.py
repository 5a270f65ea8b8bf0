"""Jobs of a sweep that fail without ending it, and the sweep's summary (`sweep_summary.json`/`.csv`).

Each job writes `job_status.json` into its own dir when it ends (in the job's process, so this also
works when submitit runs jobs elsewhere); the summary is rebuilt from those files after every job
and once more when the sweep ends.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from lightsuite.errors import RunInterrupted, UserExit, log_to_job_files
from lightsuite.io import STATUS_FILE, SUMMARY, replacing, write_json
from lightsuite.launch.ddp import SWEEP_RANK, in_multirun, release_launch
from lightsuite.launch.optuna_trial import forget_pruning, pruned_after, pruned_record

_failure: dict[str, str] = {}


def _fail_job(error: str | None) -> None:
    """Record why this process's current job failed (None: a new job starts) for `RunReport`.

    A function, not the dict itself, in the job wrapper: submitit pickles the wrapper by value, and
    a dict it referred to directly would arrive in the job's process as a copy that no one reads.
    """
    _failure.clear()
    if error is not None:
        _failure["error"] = error


def keep_sweeping(main: Callable[[DictConfig], float | None]) -> Callable[[DictConfig], float | None]:
    """Under `-m`, a job's user error or non-finite objective fails that job only.

    The entry point turns user errors into `UserExit(1)`, which Hydra's job runner does not catch:
    one bad trial would end the whole sweep. Here the job returns None instead (Optuna records the
    trial as failed, as it does for a NaN it could not rank) and `job_status.json` says why.
    An interrupt is not a failure of the job: Ctrl-C ends the sweep, and a SLURM job stopped for a
    requeue ends its process without a result (the launcher waits for the requeued run).
    """

    @functools.wraps(main)
    def job(cfg: DictConfig) -> float | None:
        _fail_job(None)
        if os.environ.get(SWEEP_RANK):
            return _extra_rank(main, cfg)  # keeps what its rank 0 left it (an Optuna trial's mark)
        forget_pruning()
        if not in_multirun():
            return main(cfg)
        try:
            value = main(cfg)
        except UserExit as exc:
            if isinstance(exc.error, RunInterrupted):
                # Ctrl-C ends the sweep; in a SLURM job, a stop (requeue, preemption, time limit)
                # must end the process without a result, so the launcher waits for the requeued run
                raise
            _fail_job(str(exc.error))
            return None
        if value is not None and not math.isfinite(value):
            # None, not the value: a sweeper could rank an infinity as a result (Optuna tells it as one)
            reason = f"{cfg.get('optimized_metric')} is {value}"
            log_to_job_files(f"error: {reason}")
            _fail_job(reason)
            return None
        return value

    return job


def _extra_rank(main: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """An extra DDP rank of a multirun job ends a user error with status 0: rank 0 hits the same
    error (a diverged loss is synced over ranks) and records the job as failed, while a nonzero exit
    here would make Lightning's process observer kill rank 0, and with it the whole sweep."""
    try:
        return main(cfg)
    except UserExit:
        raise SystemExit(0) from None


def _rank_zero() -> bool:
    """Rank 0 of a job's DDP ranks, however they were started (Lightning, torchrun or SLURM)."""
    return all(os.environ.get(key, "0") == "0" for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def _read_metrics(run_dir: Path) -> dict[str, float | None]:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


class RunReport(Callback):
    """Hydra callback: one closing line per run, a status file per job, the sweep's summary.

    Also ends each job's DDP (`release_launch`), so the next job of a sweep starts clean.
    """

    def __init__(self, headline: list[str] | None = None) -> None:
        self.headline = list(headline or [])

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        release_launch()
        if not _rank_zero() or job_return.hydra_cfg is None:
            return
        hydra_cfg = job_return.hydra_cfg.hydra
        run_dir = Path(hydra_cfg.runtime.output_dir)
        metrics = _read_metrics(run_dir)
        objective_name = config.get("optimized_metric")
        objective = metrics.get(objective_name) if objective_name else None
        status = "completed" if job_return.status == JobStatus.COMPLETED else "failed"
        error = _failure.get("error")
        if job_return.status == JobStatus.FAILED:
            exc = job_return._return_value
            error = (
                (str(exc).strip().splitlines() or [type(exc).__name__])[0] if exc is not None else "failed"
            )
        pruned = pruned_record()
        if error is not None:
            status = "failed"
        elif pruned and status == "completed":
            status = "pruned"
        if objective is not None and not math.isfinite(objective):
            objective = None
        keys = [k for k in [objective_name, *self.headline] if k and metrics.get(k) is not None]
        shown = "  ".join(f"{k}={metrics[k]:.4g}" for k in dict.fromkeys(keys))
        outcome = f"failed: {error}" if error else "" if shown else status
        if status == "pruned":
            outcome = pruned_after(pruned["epoch"])
        line = "  ".join(part for part in (f"run dir: {run_dir}", shown, outcome) if part)
        print(line, file=sys.stderr if error else sys.stdout)
        if hydra_cfg.mode.name != "MULTIRUN":
            return
        record = {
            "job": int(hydra_cfg.job.num),
            "overrides": list(hydra_cfg.overrides.task),
            "status": status,
            "objective": objective,
            "run_dir": str(run_dir),
            "error": error,
        }
        if status == "pruned":
            record["pruned_at_epoch"] = pruned["epoch"]
        record_job_status(run_dir, record)
        write_summary(job_sweep_dir(config, run_dir), objective_name, _direction(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_summary(Path(config.hydra.sweep.dir), config.get("optimized_metric"), _direction(config))
        print(f"sweep summary: {path}")


def job_sweep_dir(config: DictConfig, run_dir: Path) -> Path:
    """The sweep dir of the job in `run_dir`: the run dir less `hydra.sweep.subdir`.

    From the job's own config: `job_return.hydra_cfg` is Hydra's copy of the `hydra` node alone, in
    which the default `${paths.log_dir}/multirun/...` cannot resolve. Taken from the run dir rather
    than by resolving `hydra.sweep.dir` again, whose `${now:...}` could give a later time.
    """
    subdir = Path(str(OmegaConf.select(config, "hydra.sweep.subdir", default="")))
    depth = len(subdir.parts)
    if depth and not subdir.is_absolute() and run_dir.parts[-depth:] == subdir.parts:
        return Path(*run_dir.parts[:-depth])
    return Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).absolute()


def job_dir(config_loader: Any, config: DictConfig, overrides: list[str], number: int) -> Path:
    """The dir of job `number` of the sweep, as the job itself will name it (`hydra.sweep.dir`/`subdir`)."""
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    try:
        cfg = config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = number
        return sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    except Exception:  # a subdir pattern that needs the job's own runtime: the default layout
        return sweep_dir / str(number)


def record_job_status(run_dir: Path, record: dict[str, Any]) -> None:
    """Write a job's `job_status.json`, the file the sweep summary is rebuilt from."""
    write_json(run_dir / STATUS_FILE, record)


def _direction(config: DictConfig) -> str:
    """The Optuna preset's direction; otherwise the best checkpoint's mode (both follow the objective)."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if isinstance(direction, ListConfig | list):
        direction = direction[0]
    if direction is None:
        mode = OmegaConf.select(config, "callbacks.model_checkpoint.mode", default="max")
        return "minimize" if mode == "min" else "maximize"
    return str(getattr(direction, "name", direction))


def write_summary(
    sweep_dir: Path, objective: str | None, direction: str = "maximize", study: dict | None = None
) -> Path:
    """Collect every job's `job_status.json` under `sweep_dir` into `sweep_summary.json` and `.csv`.

    `study` names an Optuna search's study and storage; once written, later summaries keep it.
    """
    if study is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            study = json.loads((sweep_dir / f"{SUMMARY}.json").read_text()).get("study")
    jobs = []
    for path in sorted(sweep_dir.glob(f"*/{STATUS_FILE}")):
        try:
            jobs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):  # a job writing right now
            continue
    jobs.sort(key=lambda job: job["job"])
    ranked = [job for job in jobs if job["status"] == "completed" and job["objective"] is not None]
    pick = max if direction == "maximize" else min
    best = pick(ranked, key=lambda job: job["objective"]) if ranked else None
    summary = {
        "sweep_dir": str(sweep_dir),
        "objective": objective,
        "direction": direction,
        "completed": sum(job["status"] == "completed" for job in jobs),
        "failed": sum(job["status"] == "failed" for job in jobs),
        "pruned": sum(job["status"] == "pruned" for job in jobs),
        "best": best,
        "jobs": jobs,
    }
    if study is not None:
        summary["study"] = study
    write_json(sweep_dir / f"{SUMMARY}.json", summary)
    rows = [{**job, "overrides": " ".join(job["overrides"])} for job in jobs]
    with replacing(sweep_dir / f"{SUMMARY}.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(
            f, ["job", "status", "objective", "overrides", "run_dir", "error"], extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    return sweep_dir / f"{SUMMARY}.json"


def read_job_status(run_dir: Path, number: int) -> dict | None:
    """Job `number`'s own `job_status.json`, if it wrote one (and it is this job's)."""
    try:
        record = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("job") == number else None


def job_error(ret: JobReturn | BaseException | None) -> str | None:
    """Why a launched job failed, in one line (an exception or Hydra's failed JobReturn), or None."""
    if isinstance(ret, BaseException):
        return (str(ret).strip().splitlines() or [type(ret).__name__])[0]
    if isinstance(ret, JobReturn) and ret.status == JobStatus.FAILED:
        exc = ret._return_value
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0] if exc is not None else "failed"
    return None

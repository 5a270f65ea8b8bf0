"""One job of `hydra/launcher=parallel`, in its own fresh interpreter:
`python -m lightsuite.launch.parallel_job <sweep dir>/.parallel/<job>_job.pkl`.

It pins itself to its slot's cores, shows itself as the sweep's own command (Lightning's DDP
starts a job's extra ranks by re-running `__main__` with `sys.argv`: they must run the entry point,
not this module), runs Hydra's `run_job` on the job's config exactly as the basic launcher would,
and writes the JobReturn where the launcher reads it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from lightsuite.launch.parallel import CORES_ENV


def pin_to_cores() -> None:
    """Run on the slot's cores only; the job's DDP ranks, its children, inherit the mask."""
    cores = os.environ.pop(CORES_ENV, "")
    if cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError, ValueError):  # a core taken away since the plan
            os.sched_setaffinity(0, {int(core) for core in cores.split(",")})


def show_as_entry_point(argv: list[str], main_module: str | None) -> None:
    """Make `__main__` and `sys.argv` the sweep's command's (`python -m lightsuite.train`, a script)."""
    import __main__

    sys.argv = list(argv)
    __main__.__spec__ = importlib.util.find_spec(main_module) if main_module else None


def main(spec_path: str) -> int:
    """Run the job described in `spec_path` and write its JobReturn (a failed job is a result too)."""
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals

    pin_to_cores()
    spec = cloudpickle.loads(Path(spec_path).read_bytes())
    show_as_entry_point(spec["argv"], spec["main_module"])
    Singleton.set_state(spec["singleton_state"])
    setup_globals()
    ret = run_job(
        hydra_context=spec["hydra_context"],
        task_function=spec["task_function"],
        config=spec["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if ret.status == JobStatus.FAILED and isinstance(ret._return_value, BaseException):
        # Hydra keeps a job's exception for whoever reads its result: its trace goes to the job's log
        import traceback

        traceback.print_exception(ret._return_value, file=sys.stderr)
    try:
        data = cloudpickle.dumps(ret)
    except Exception:  # an exception that does not pickle: its first line does
        from lightsuite.launch.sweeps import job_error

        plain = JobReturn(overrides=ret.overrides, status=ret.status, hydra_cfg=ret.hydra_cfg)
        plain.working_dir, plain.task_name = ret.working_dir, ret.task_name
        if ret.status == JobStatus.FAILED:
            plain.return_value = RuntimeError(job_error(ret))
        data = cloudpickle.dumps(plain)
    result = Path(spec["result_file"])
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

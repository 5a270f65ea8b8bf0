"""Lightning's script-launched DDP inside a Hydra multirun: every rank trains exactly this job.

Lightning starts each extra rank by re-running `sys.argv` (plus `hydra.run.dir=<HydraConfig
run.dir>`). Under `-m` that command line is the whole sweep, and the run dir is the pattern of a
single run, not this job's dir. While the children start, the command line is shown as a single
run of this job (its task overrides, an Optuna trial's sampled values included) and the run dir as
this job's dir; both are put back right after. At the end of the job, `release_launch` destroys
the process group and restores the environment Lightning set, so the next job of the sweep starts
its own ranks on a fresh port.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write

if TYPE_CHECKING:
    import pytorch_lightning as pl

# what Lightning's launcher writes into os.environ for the ranks it starts
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
_saved: dict[str, Any] = {}
# set for the extra ranks of a multirun job (see sweeps.keep_sweeping)
SWEEP_RANK = "LIGHTSUITE_SWEEP_RANK"


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def prepare_launch(trainer: pl.Trainer) -> None:
    """Make Lightning's script launcher start this job's ranks, with threads that fit the cores."""
    import torch
    from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if (
        not isinstance(launcher, _SubprocessScriptLauncher)
        or launcher.cluster_environment.creates_processes_externally
    ):
        return
    threads = None
    if trainer.strategy.root_device.type == "cpu":
        # ranks x threads <= cores: oversubscribed ranks ran 5-10x slower than one process alone
        threads = max(1, min(torch.get_num_threads(), cpu_count() // launcher.num_processes))
    start_children = launcher._call_children_scripts

    def start_children_of_this_job() -> None:
        _saved.setdefault("env", {key: os.environ.get(key) for key in _LAUNCH_ENV})
        _saved.setdefault("threads", torch.get_num_threads())
        if threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # read by each child's torch at start-up
            torch.set_num_threads(threads)
        with single_job_command_line():
            os.environ[SWEEP_RANK] = "1" if in_multirun() else ""
            try:
                start_children()
            finally:
                os.environ.pop(SWEEP_RANK, None)

    launcher._call_children_scripts = start_children_of_this_job


@contextmanager
def single_job_command_line() -> Iterator[None]:
    """Show `sys.argv` and Hydra's run dir as a single run of the current multirun job."""
    if not in_multirun():
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = sys.argv, hydra_cfg.run.dir
    # hydra.mode=RUN: a preset such as hparams_search sets MULTIRUN, which would start a sweep per rank
    sys.argv = [argv[0], *config_options(argv), *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = run_dir


# Hydra's options that say where the config is (a user's own --config-dir): the ranks need them too
_CONFIG_OPTIONS = ("--config-dir", "--config-path", "--config-name", "-cd", "-cp", "-cn")


def config_options(argv: list[str]) -> list[str]:
    """The command line's config-location options (`--config-dir=D`, `-cd D`, ...), as given."""
    kept, words = [], iter(argv[1:])
    for word in words:
        name = word.split("=", 1)[0]
        if name in _CONFIG_OPTIONS:
            kept.append(word)
            if "=" not in word:
                kept.append(next(words, ""))
    return kept


def release_launch() -> None:
    """End this job's DDP: destroy its process group, restore the environment and thread count."""
    if "torch" not in sys.modules:
        return  # no run started in this process (a config error), so there is nothing to release
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    env = _saved.pop("env", None)
    if env is not None:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    threads = _saved.pop("threads", None)
    if threads is not None:
        torch.set_num_threads(threads)


def announce_rank(trainer: pl.Trainer, cfg: Any) -> None:
    """Each DDP rank says, in its own log, which rank it is, who started it and what it trains.

    With SLURM every rank writes its own task log: this line shows that all ranks of a job run that
    job's overrides and the same resolved config (its digest), and that SLURM, not Lightning's
    re-run of the command line, started them.
    """
    if trainer.world_size <= 1:
        return
    import hashlib

    import torch

    overrides = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.")]
    digest = hashlib.sha1(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:12]
    environment = type(getattr(trainer.strategy, "cluster_environment", None)).__name__
    threads = torch.get_num_threads()
    print(
        f"rank {trainer.global_rank}/{trainer.world_size} ({environment}, {threads} threads): "
        f"{' '.join(overrides) or '(no overrides)'}; config {digest}",
        file=sys.stderr,
        flush=True,
    )

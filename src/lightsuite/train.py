"""`lightsuite-train`: fit a task on a data set, test the best checkpoint, write `metrics.json`.

lightsuite-train                                  # digits + ResNet-20 on the CPU
lightsuite-train experiment=cifar10_resnet_paper model=plain56
lightsuite-train -m model=resnet20,plain20 seed=1,2,3
lightsuite-train model=resnet1202 dry_run=true    # check config, build, count parameters; no training
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lightsuite import CONFIG_DIR
from lightsuite.config.checks import check_config
from lightsuite.config.resolvers import register_resolvers
from lightsuite.errors import exit_on_user_error
from lightsuite.launch.sweeps import keep_sweeping

# `conf/` uses them; a job that submitit unpickles elsewhere imports this module too
register_resolvers()

_runs_started: list[float] = []


def process_age() -> float:
    """Seconds since this process started (from Linux's /proc), or 0 where that cannot be read."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(after_name[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: start time
    except (OSError, ValueError, IndexError):
        return 0.0


def train(cfg: DictConfig) -> dict[str, float]:
    """Build every object from `cfg`, fit, test the best checkpoint and return the final metrics.

    With `dry_run=true` it stops after building the network and task (no data loaded) and
    returns an empty dict. A trial an Optuna search prunes stops fitting and is not tested.
    A re-run of a finished run returns its `metrics.json`. The config is checked first without
    importing torch or Lightning (seconds saved on every wrong value), the run itself is
    `run/fit.py`.
    """
    # the start-up a run reports: the process's for its first run (imports included), else this call's
    started = time.perf_counter()
    if not _runs_started:
        started -= process_age()
    _runs_started.append(started)
    check_config(cfg, imports=False)
    from lightsuite.run.fit import fit_and_test

    return fit_and_test(cfg, started)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@keep_sweeping
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` for sweepers."""
    with exit_on_user_error():
        metrics = train(cfg)
        if cfg.get("dry_run", False):
            return None
        from lightsuite.run.files import metric_value  # loaded by the run already

        return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()

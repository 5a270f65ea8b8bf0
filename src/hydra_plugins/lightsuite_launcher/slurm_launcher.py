"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, with lightsuite's job watching.

Hydra only instantiates launchers that live in the `hydra_plugins` namespace; the work is done in
`lightsuite.launch.slurm_submit`, imported only when a sweep is launched: Hydra imports every
plugin module whenever it scans for plugins, in every Hydra app of the environment.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Submits a sweep as a SLURM job array and watches it with squeue (see `launch_sweep`).

    Each job runs `__call__` (Hydra's job runner) in every SLURM task; a job stopped before its
    time limit is checkpointed by submitit (`checkpoint`) and requeued, and resumes from its run
    dir's `last.ckpt`.
    """

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lightsuite.launch.slurm_submit import launch_sweep

        return launch_sweep(self, job_overrides, initial_job_idx)

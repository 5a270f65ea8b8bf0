"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, with lightsuite's job watching.

Hydra only instantiates launchers that live in the `hydra_plugins` namespace; the work is done in
`lightsuite.utils.slurm`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from lightsuite.utils.slurm import launch_sweep


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Submits a sweep as a SLURM job array and watches it with squeue (see `launch_sweep`).

    Each job runs `__call__` (Hydra's job runner) in every SLURM task; a job stopped before its
    time limit is checkpointed by submitit (`checkpoint`) and requeued, and resumes from its run
    dir's `last.ckpt`.
    """

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return launch_sweep(self, job_overrides, initial_job_idx)

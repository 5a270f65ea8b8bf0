"""Processes: DDP ranks inside sweeps, jobs that fail without ending a sweep, SLURM."""

"""lightsuite's Hydra launcher plugin (SLURM jobs watched with squeue)."""

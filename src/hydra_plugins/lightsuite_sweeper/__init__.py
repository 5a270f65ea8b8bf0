"""lightsuite's Hydra sweeper plugin (an Optuna search on current Optuna)."""

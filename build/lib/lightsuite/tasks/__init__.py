"""LightningModules: one per family, each taking its network as an argument."""

"""LightningDataModules: each owns loading, splitting, scaling and augmentation of one data set."""

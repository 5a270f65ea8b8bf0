"""lightsuite: PyTorch Lightning + Hydra experiments for ResNets, GANs and RNNs."""

__version__ = "0.1.0"

from pathlib import Path

# The configs live in the checkout's top-level conf/ (the project is installed editable: `make`)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

"""lightsuite: PyTorch Lightning + Hydra experiments for ResNets, GANs and RNNs."""

__version__ = "0.1.0"

from pathlib import Path

# The configs ship inside the package, so a plain `pip install` finds them from any directory;
# the checkout's top-level `conf` is a link to this folder.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

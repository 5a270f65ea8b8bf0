"""`lightsuite-sample` for GAN checkpoints: which samples to draw (a class, every class, no class) and
where to write them (.png picture or .npy array)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from lightsuite.errors import ConfigError
from lightsuite.io import save_npy, save_png

SAMPLE_FORMATS = (".png", ".npy")


def sample_labels(n: int, label: int | None, num_classes: int | None, ckpt: str, grid: bool) -> Tensor | None:
    """The labels to draw `n` samples for: all `label`, or class by class for a conditional generator
    (`num_classes` set; rounded up to whole rows of an image `grid`), or None for an unconditional one."""
    if num_classes is None:
        if label is not None:
            raise ConfigError(
                f"label={label} needs a class-conditional GAN, but ckpt_path={ckpt} is unconditional "
                "(trained without model.conditional=true): drop label="
            )
        return None
    if label is not None:
        if not 0 <= label < num_classes:
            raise ConfigError(
                f"label={label} is out of range: this generator knows classes 0 to {num_classes - 1}"
            )
        return torch.full((n,), label, dtype=torch.long)
    if grid:
        return torch.arange(num_classes).repeat_interleave(-(-n // num_classes))
    return torch.arange(n) * num_classes // n


def write_samples(task: Any, options: DictConfig) -> str:
    """Write `options.num_samples` samples of `task` (a GANTask) to `options.output`, as `options.label`
    asks; returns the summary line."""
    n, output = int(options.num_samples), Path(str(options.output)).expanduser()
    if n < 1:
        raise ConfigError(f"num_samples={n} must be >= 1")
    if output.suffix not in SAMPLE_FORMATS:
        raise ConfigError(f"output={output} must end in .png (grid or scatter) or .npy (the raw array)")
    net = task.net
    grid = output.suffix == ".png" and len(net.sample_shape) == 3
    classes = net.num_classes if net.conditional else None
    label = options.get("label")
    labels = sample_labels(n, label, classes, str(options.get("ckpt_path")), grid)
    samples = task.generate(n if labels is None else len(labels), labels=labels).cpu()
    if output.suffix == ".npy":
        save_npy(samples.numpy().astype(np.float32), output)
    else:
        save_png(task.picture(samples, None if label is not None else labels), output)
    shape = " x ".join(map(str, samples.shape))
    which = f" of class {label}" if label is not None else ""
    if labels is not None and label is None:
        which = f", {classes} classes in order"
    return f"wrote {len(samples)} samples ({shape}){which} to {output}"

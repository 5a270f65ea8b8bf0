"""Pictures of generated samples: image grids and 2-D scatter plots, as PNG files and logger images."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid


def image_grid(images: Tensor, nrow: int | None = None) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] as one (H', W', 3) uint8 grid, about square.

    Images smaller than 32 pixels are enlarged (nearest neighbour) to at least 32, so 8x8 digits
    stay visible.
    """
    images = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    scale = max(1, -(-32 // images.shape[-1]))
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    nrow = nrow or max(1, round(len(images) ** 0.5))
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=1.0)
    return grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def scatter_plot(
    points: Tensor,
    modes: Tensor | None = None,
    std: float = 0.0,
    size: int = 512,
    labels: Tensor | None = None,
) -> np.ndarray:
    """(N, 2) points as blue dots over the true modes (red rings of 3 std), as (size, size, 3) uint8.

    With `labels` (a conditional generator's classes) each dot takes its class's colour, the rings black.
    """
    points = points.detach().float().cpu()
    ref = modes if modes is not None else points
    extent = float(ref.abs().max()) * 1.25 + 3 * std if len(ref) else 1.0
    extent = max(extent, 1e-3)

    def pixel(xy: Tensor) -> Tensor:  # data coordinates -> pixel coordinates, y pointing up
        scaled = (xy.clamp(-extent, extent) / extent + 1) / 2 * (size - 1)
        return torch.stack([scaled[:, 0], (size - 1) - scaled[:, 1]], dim=1)

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    mid = (size - 1) / 2
    draw.line([(0, mid), (size, mid)], fill=(220, 220, 220))
    draw.line([(mid, 0), (mid, size)], fill=(220, 220, 220))
    colours = [(31, 119, 180)] * len(points) if labels is None else class_colours(labels)
    for (x, y), colour in zip(pixel(points).tolist(), colours, strict=True):
        draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=colour)
    if modes is not None:
        r = max(3.0, 3 * std / extent * (size - 1) / 2)
        ring = (214, 39, 40) if labels is None else (0, 0, 0)  # tab10 has a red of its own
        for x, y in pixel(modes.float().cpu()).tolist():
            draw.ellipse([x - r, y - r, x + r, y + r], outline=ring, width=2)
    return np.asarray(image)


def class_colours(labels: Tensor) -> list[tuple[int, int, int]]:
    """An RGB colour per label: matplotlib's tab10 for up to 10 classes, its hsv wheel for more."""
    count = int(labels.max()) + 1 if len(labels) else 1
    cmap = colormaps["tab10"] if count <= 10 else colormaps["hsv"].resampled(count + 1)
    table = [tuple(int(255 * c) for c in cmap(k)[:3]) for k in range(count)]
    return [table[k] for k in labels.tolist()]


def log_image(loggers: Iterable[Logger], key: str, array: np.ndarray, step: int) -> None:
    """Hand an (H, W, 3) uint8 image to every logger that takes images (W&B, TensorBoard)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[array], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, array, step, dataformats="HWC")

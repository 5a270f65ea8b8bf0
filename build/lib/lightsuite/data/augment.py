"""Batch augmentation as tensor ops, run on the training device after transfer.

Per-sample PIL transforms in DataLoader workers cost CPU time per image; these cost one kernel per
batch, on whatever device the batch is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(x: Tensor, padding: int) -> Tensor:
    """Zero-pad by `padding` and crop back to the input size at a random offset per image."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
    cols = (dx + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
    flat = rows * (w + 2 * padding) + cols
    out = padded.flatten(2).gather(2, flat.view(n, 1, h * w).expand(n, c, h * w))
    return out.view(n, c, h, w)


def random_hflip(x: Tensor, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability `p`."""
    if p <= 0:
        return x
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(flip, x.flip(-1), x)

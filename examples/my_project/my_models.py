"""A user's own network, trained by lightsuite without forking it (docs/configuration.md)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, one hidden layer, logits: takes the `net_kwargs` every image DataModule supplies."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        size = input_shape[0] * input_shape[1] * input_shape[2]
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

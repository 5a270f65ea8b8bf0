"""The feature network of the GAN family's FID: a classifier trained by the suite's own classification task.

Inception weights need a download; a classifier trained on the same real data needs none and is a
sharper judge of small images (digits, MNIST) than ImageNet features. It sees images in the GAN's
pixel range ([-1, 1], `data.pixels=symmetric`), comes from a classification checkpoint or is trained
on first use and cached, and is frozen: eval mode, no gradients, never part of a GAN checkpoint.
The task holds the recipe; getting the network is run code's step (`lightsuite.run.fid.FIDFeatures`),
handed to the task as its `fid_features` argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from lightsuite.errors import ConfigError


class FeatureClassifier(nn.Module):
    """A classifier whose forward returns the input of its last linear layer `fc` (`num_features` wide)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(net, "fc", None), nn.Linear):
            raise ConfigError("the FID classifier must end in a linear layer named `fc` (e.g. resnet20)")
        self.net = net
        # torchmetrics' FID reads the feature size from here instead of probing with a dummy image
        self.num_features = net.fc.in_features
        self._features: Tensor | None = None
        net.fc.register_forward_hook(self._keep_input)
        self.eval().requires_grad_(False)

    def _keep_input(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self._features = args[0]

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.net(x)
        return self._features, logits

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[0]

    def train(self, mode: bool = True) -> FeatureClassifier:
        # frozen for good: BatchNorm must keep its running statistics whoever calls .train()
        return super().train(False)


@dataclass(frozen=True)
class FIDRecipe:
    """What determines the FID classifier: the task's `fid_classifier*` settings."""

    classifier: Callable[..., nn.Module]
    ckpt: str | None = None
    cache_dir: str | None = None
    epochs: int = 10
    seed: int = 0


class FeatureSource(Protocol):
    """Gets the classifier of a recipe: `prepare` once per run (global rank 0), then `load` on every rank."""

    def prepare(
        self, recipe: FIDRecipe, datamodule: Any, device: torch.device, run_dir: str | None
    ) -> None: ...

    def load(
        self,
        recipe: FIDRecipe,
        datamodule: Any,
        sample_shape: tuple[int, ...],
        device: torch.device,
        run_dir: str | None,
        world_size: int = 1,
    ) -> FeatureClassifier: ...

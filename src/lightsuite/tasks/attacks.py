"""L-infinity attacks (FGSM, PGD) and fooling images, around any classifier of normalized images.

Budgets are in pixels: `eps=0.05` lets every pixel move by 5% of the [0, 1] range, whatever the
data's normalization, and adversarial pixels stay in [0, 1]. The network sees normalized inputs,
`pixels * scale + shift` per channel (`PixelScaling`), so an attack maps its pixel perturbation
through `scale` and adds it to the clean input: at eps=0 the network sees the clean input bit for bit.

Written here rather than taken from torchattacks or foolbox: each attack is a few lines, and those
libraries (last releases 2023 and 2024) assume [0, 1] inputs, change the network's mode themselves
and would need wrapping around the suite's normalization anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightsuite.errors import ConfigError

ATTACKS = ("fgsm", "pgd")


@dataclass(frozen=True)
class PixelScaling:
    """The per-channel affine map from [0, 1] pixels to the network's input: `pixels * scale + shift`."""

    scale: Tensor  # (1, C, 1, 1)
    shift: Tensor

    @classmethod
    def of(cls, normalize: Callable[[Tensor], Tensor], channels: int) -> PixelScaling:
        """Read the map off a DataModule's own normalization at pixels 0 and 1 (it is affine per channel),
        so that attacks follow whatever scaling the data chose (standardized, symmetric)."""
        zero = normalize(torch.zeros(1, channels, 1, 1)).detach().float()
        one = normalize(torch.ones(1, channels, 1, 1)).detach().float()
        return cls(one - zero, zero)

    @classmethod
    def from_lists(cls, scale: list[float], shift: list[float]) -> PixelScaling:
        """Rebuild from `as_lists()` (how a checkpoint stores it)."""
        return cls(torch.tensor(scale).view(1, -1, 1, 1), torch.tensor(shift).view(1, -1, 1, 1))

    def as_lists(self) -> tuple[list[float], list[float]]:
        return self.scale.flatten().tolist(), self.shift.flatten().tolist()

    def to(self, device: torch.device) -> PixelScaling:
        return PixelScaling(self.scale.to(device), self.shift.to(device))

    def cloned(self) -> PixelScaling:
        return PixelScaling(self.scale.clone(), self.shift.clone())

    def to_input(self, pixels: Tensor) -> Tensor:
        return pixels * self.scale + self.shift

    def to_pixels(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


def check_attack(eps: float, steps: int, step_size: float | None, prefix: str) -> None:
    """Refuse an attack's settings with one line naming the key (`prefix` + `eps`, `steps`, `step_size`)."""
    if eps < 0:
        raise ConfigError(f"{prefix}eps={eps} must be 0 or more (an L-inf budget in [0, 1] pixels)")
    if steps < 1:
        raise ConfigError(f"{prefix}steps={steps} must be at least 1")
    if step_size is not None and step_size <= 0:
        raise ConfigError(f"{prefix}step_size={step_size} must be positive (pixels per step), or null")


def pgd(
    net: nn.Module,
    x: Tensor,
    labels: Tensor,
    scaling: PixelScaling,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
) -> Tensor:
    """Projected gradient ascent on the cross-entropy within `eps` (pixels, L-inf) of `x`; returns the
    adversarial network input. `step_size` defaults to 2.5 * eps / steps (Madry et al. 2018).

    Gradients are taken w.r.t. the input only (`autograd.grad`), so no parameter's `.grad` changes;
    the network's mode is the caller's. Works inside Lightning's validation (inference mode).
    """
    step = 2.5 * eps / steps if step_size is None else step_size
    with torch.inference_mode(False), torch.enable_grad():
        # a clone outside inference mode is an ordinary tensor that autograd can record
        x, labels, scaling = x.detach().clone(), labels.clone(), scaling.cloned()
        pixels = scaling.to_pixels(x)
        adv = pixels.clone()
        if random_start and eps > 0:
            adv = _project(adv + torch.empty_like(adv).uniform_(-eps, eps), pixels, eps)
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(net(_perturbed(x, pixels, adv, scaling)), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            adv = _project(adv.detach() + step * grad.sign(), pixels, eps)
        return _perturbed(x, pixels, adv, scaling).detach()


def fgsm(net: nn.Module, x: Tensor, labels: Tensor, scaling: PixelScaling, eps: float) -> Tensor:
    """The fast gradient sign method (Goodfellow et al. 2015): one step of eps from the clean input."""
    return pgd(net, x, labels, scaling, eps, steps=1, step_size=eps, random_start=False)


def _project(adv: Tensor, pixels: Tensor, eps: float) -> Tensor:
    # valid range first, then the eps-ball: the clean image always stays a feasible point
    return torch.minimum(torch.maximum(adv.clamp(0, 1), pixels - eps), pixels + eps)


def _perturbed(x: Tensor, pixels: Tensor, adv: Tensor, scaling: PixelScaling) -> Tensor:
    return x + (adv - pixels) * scaling.scale


def fooling_images(
    net: nn.Module,
    scaling: PixelScaling,
    shape: tuple[int, int, int],
    classes: int | list[int],
    steps: int = 200,
    step_size: float = 0.01,
    confidence: float = 0.99,
) -> tuple[Tensor, Tensor]:
    """One image per class, from uniform noise, by signed gradient ascent on that class's log-probability
    in [0, 1] pixels (Nguyen et al. 2015 found such images with evolution and with gradients).

    Stops once every class reaches `confidence`, or after `steps`; returns the pixels (N, C, H, W)
    and each image's probability of its class, reached or not.
    """
    with torch.inference_mode(False), torch.enable_grad():
        # made here: tensors made in inference mode (`lightsuite-sample`) cannot enter autograd
        scaling = scaling.cloned()
        wanted = list(range(classes)) if isinstance(classes, int) else list(classes)
        target = torch.tensor(wanted, device=scaling.scale.device)
        adv = torch.rand(len(wanted), *shape, device=scaling.scale.device)
        for _ in range(steps):
            adv.requires_grad_(True)
            log_probs = net(scaling.to_input(adv)).log_softmax(dim=1)
            reached = log_probs.detach().gather(1, target[:, None]).exp().squeeze(1)
            if bool((reached >= confidence).all()):
                break
            (grad,) = torch.autograd.grad(log_probs.gather(1, target[:, None]).sum(), adv)
            adv = (adv.detach() + step_size * grad.sign()).clamp(0, 1)
        adv = adv.detach()
        probs = net(scaling.to_input(adv)).softmax(dim=1)
    return adv, probs.gather(1, target[:, None]).squeeze(1).detach()

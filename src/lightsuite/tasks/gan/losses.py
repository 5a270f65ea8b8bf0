"""The adversarial objectives, as functions of D's raw scores (logits) on real and generated samples.

Each objective is a pair: the discriminator's loss (minimised by D) and the generator's (minimised
by G). With s the logit and sigmoid(s) = D(x), log D(x) = -softplus(-s), log(1 - D(x)) = -softplus(s).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("minimax", "non_saturating", "hinge", "wgan_gp")


def d_loss(name: str, real: Tensor, fake: Tensor) -> Tensor:
    """D's loss on scores of real and of generated samples (without WGAN-GP's penalty term)."""
    if name in ("minimax", "non_saturating"):
        # -[log D(x) + log(1 - D(G(z)))]: binary cross-entropy, the same for both forms of G's loss
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if name == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if name == "wgan_gp":
        # the critic maximises E[D(x)] - E[D(G(z))]
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss {name!r}")


def g_loss(name: str, fake: Tensor) -> Tensor:
    """G's loss on D's scores of generated samples."""
    if name == "minimax":
        # the paper's min_G log(1 - D(G(z))): saturates (vanishing gradient) while D rejects G's samples
        return -F.softplus(fake).mean()
    if name == "non_saturating":
        # the paper's practical advice: max_G log D(G(z))
        return F.softplus(-fake).mean()
    if name in ("hinge", "wgan_gp"):
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {name!r}")


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, pack: int = 1
) -> Tensor:
    """Gulrajani et al. 2017: (||grad_x D(x)||_2 - 1)^2 at random points between real and fake samples.

    The norm is taken per input of D, i.e. per pack of `pack` samples. For a conditional D pass it
    with the labels bound that real[i] has and fake[i] was generated for: each interpolate keeps its class.
    """
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = discriminator(pack_samples(mixed, pack))
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    grad = pack_samples(grad, pack).flatten(1)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def pack_samples(x: Tensor, pack: int) -> Tensor:
    """(N, F...) -> (N / pack, pack * F0, F1...): `pack` consecutive samples stacked along the first axis."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])

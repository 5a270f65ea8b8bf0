"""GAN networks: a generator G (noise z -> sample) and a discriminator D (sample -> one score), as a pair.

`mlp_gan` is the 2014 paper's kind (Goodfellow et al., arXiv 1406.2661) for vectors and small images;
`dcgan` follows Radford et al. 2015 (strided convolutions, BatchNorm in G, LeakyReLU in D, no pooling),
sized from the data's `input_shape` for 8x8, 28x28 and 32x32 images. D scores `pack` samples jointly
(PacGAN, Lin et al. 2018) by taking them stacked along its first feature/channel axis.

With `conditional=True` both take a class label (the data's `num_classes` classes): G(z, y) sees the
label one-hot beside z (Mirza & Osindero 2014, arXiv 1411.1784) and D(x, y) scores by projection
(Miyato & Koyama 2018, arXiv 1802.05637): psi(phi(x)) + <e_y, phi(x)>. Projection rather than
concatenation in D because the label then enters as the log-ratio term of the conditional densities,
on D's features rather than beside its input, where a convolutional D could learn to ignore it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightsuite.errors import ConfigError


class GAN(nn.Module):
    """A generator and a discriminator with what a task needs to drive them: the noise size and the shapes.

    Outputs of G are in [-1, 1] for images (tanh) and unbounded for vectors; D returns raw scores
    (logits), one per pack of `pack` samples. `num_classes` is the data's class count; a `conditional`
    pair takes labels: `generator(z, labels)`, `discriminator(x, labels)` (one label per sample).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int,
        sample_shape: Sequence[int],
        pack: int,
        num_classes: int | None = None,
        conditional: bool = False,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.pack = pack
        self.num_classes = num_classes
        self.conditional = conditional

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal z for `n` samples, on the networks' device."""
        device = next(self.generator.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generator(z) if labels is None else self.generator(z, labels)


class ConditionalGenerator(nn.Module):
    """G(z, y) = body([z, one_hot(y)]): a one-hot label is all a first linear layer needs (it adds a
    learned per-class vector to its output), so no embedding table of its own."""

    def __init__(self, body: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.body, self.num_classes = body, num_classes

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.body(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1))


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = head(phi(x)) + <e_y, phi(x)>, with phi the unconditional D's layers before its last.

    Under PacGAN one input holds `pack` samples: each position of the pack has its own class
    embeddings, summed, so the score knows which sample carries which label.
    """

    def __init__(self, features: nn.Module, head: nn.Linear, num_classes: int, pack: int = 1) -> None:
        super().__init__()
        self.features, self.head = features, head
        self.num_classes, self.pack = num_classes, pack
        self.embed = nn.Embedding(num_classes * pack, head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # small: D starts close to its unconditional self

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        h = self.features(x)
        slots = torch.arange(self.pack, device=labels.device) * self.num_classes
        e = self.embed(labels.reshape(-1, self.pack) + slots).sum(dim=1)
        return self.head(h) + (e * h).sum(dim=1, keepdim=True)


def _check(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"model.{name}={value} must be >= {minimum}")


def _classes(num_classes: int | None, conditional: bool) -> int:
    """How many labels a conditional pair takes (0: unconditional); refuses data without classes."""
    if not conditional:
        return 0
    if num_classes is None:
        raise ConfigError(
            "model.conditional=true needs data with class labels, and this data has none; "
            "use labelled data (data=gaussians, digits, mnist, cifar10) or model.conditional=false"
        )
    if num_classes < 2:
        raise ConfigError(
            f"model.conditional=true needs at least 2 classes, the data has {num_classes}; "
            "set model.conditional=false"
        )
    return num_classes


def _pair(
    g_layers: list[nn.Module], d_layers: list[nn.Module], head: nn.Linear, classes: int, pack: int
) -> tuple[nn.Module, nn.Module]:
    """G and D (D's layers, then its scoring `head`): plain Sequentials, the layout today's
    checkpoints name, or the conditional pair."""
    if not classes:
        return nn.Sequential(*g_layers), nn.Sequential(*d_layers, head)
    return (
        ConditionalGenerator(nn.Sequential(*g_layers), classes),
        ProjectionDiscriminator(nn.Sequential(*d_layers), head, classes, pack),
    )


def _mlp(sizes: Sequence[int], act: nn.Module) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), act]
    return layers


def mlp_gan(
    input_shape: Sequence[int],
    num_classes: int | None = None,
    latent_dim: int = 2,
    hidden_size: int = 128,
    num_layers: int = 3,
    pack: int = 1,
    conditional: bool = False,
) -> GAN:
    """MLPs with `num_layers` hidden layers of `hidden_size` (ReLU in G, LeakyReLU 0.2 in D).

    Images are flattened for D and reshaped after G (whose output then passes through tanh).
    `conditional`: G and D take the data's class labels (see the module docstring).
    """
    for name, value in (("latent_dim", latent_dim), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        _check(name, value)
    _check("pack", pack)
    classes = _classes(num_classes, conditional)
    shape = tuple(int(s) for s in input_shape)
    dim = math.prod(shape)
    image = len(shape) == 3
    hidden = [hidden_size] * num_layers
    g_layers = [*_mlp([latent_dim + classes, *hidden], nn.ReLU()), nn.Linear(hidden_size, dim)]
    if image:
        g_layers += [nn.Tanh(), nn.Unflatten(1, shape)]
    d_layers = [nn.Flatten(), *_mlp([dim * pack, *hidden], nn.LeakyReLU(0.2))]
    generator, discriminator = _pair(g_layers, d_layers, nn.Linear(hidden_size, 1), classes, pack)
    return GAN(generator, discriminator, latent_dim, shape, pack, num_classes, bool(classes))


# per input size: the side of G's first feature map and how many times it is doubled
DCGAN_LAYOUTS = {8: (2, 2), 28: (7, 2), 32: (4, 3)}


def dcgan(
    input_shape: Sequence[int],
    num_classes: int | None = None,
    latent_dim: int = 100,
    width: int = 64,
    pack: int = 1,
    conditional: bool = False,
) -> GAN:
    """DCGAN for 8x8, 28x28 or 32x32 images; `width` is D's first (and G's last hidden) channel count.

    G: z -> linear to a (width * 2^(k-1)) x s x s map -> k stride-2 transposed convs halving the
    channels (BatchNorm + ReLU between, tanh out). D mirrors it with stride-2 convs and LeakyReLU 0.2;
    its normalisation is per sample (LayerNorm over channels and pixels, not BatchNorm), because
    WGAN-GP's gradient penalty is defined per sample and PacGAN packs samples together.
    `conditional`: G and D take the data's class labels (see the module docstring).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in DCGAN_LAYOUTS:
        raise ConfigError(
            f"model=dcgan takes square 8x8, 28x28 or 32x32 images, got input_shape={list(shape)}; "
            "use model=mlp_gan for other shapes"
        )
    _check("latent_dim", latent_dim)
    _check("width", width)
    _check("pack", pack)
    classes = _classes(num_classes, conditional)
    channels, size = shape[0], shape[1]
    start, doublings = DCGAN_LAYOUTS[size]
    widths = [width * 2**i for i in range(doublings)]  # D's widths, shallow to deep

    g_layers: list[nn.Module] = [
        nn.Linear(latent_dim + classes, widths[-1] * start * start, bias=False),
        nn.Unflatten(1, (widths[-1], start, start)),
        nn.BatchNorm2d(widths[-1]),
        nn.ReLU(),
    ]
    for c_in, c_out in zip(widths[::-1], [*widths[::-1][1:], channels], strict=True):
        g_layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=c_out == channels))
        if c_out != channels:
            g_layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
    g_layers.append(nn.Tanh())

    d_layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip([channels * pack, *widths[:-1]], widths, strict=True)):
        d_layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=i == 0))
        if i > 0:
            # LayerNorm-like per-sample normalisation keeps the gradient penalty well defined
            d_layers.append(nn.GroupNorm(1, c_out))
        d_layers.append(nn.LeakyReLU(0.2))
    d_layers.append(nn.Flatten())
    head = nn.Linear(widths[-1] * start * start, 1)

    generator, discriminator = _pair(g_layers, d_layers, head, classes, pack)
    for m in (*generator.modules(), *discriminator.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)  # the DCGAN paper's initialisation
    return GAN(generator, discriminator, latent_dim, shape, pack, num_classes, bool(classes))

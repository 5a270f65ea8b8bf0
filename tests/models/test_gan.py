"""GAN networks: shapes for every supported input size, packing, and the errors for what they cannot fit."""

from __future__ import annotations

import pytest
import torch

from lightsuite.errors import ConfigError
from lightsuite.models.gan import dcgan, mlp_gan


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_dcgan_generates_images_of_the_data_shape_in_tanh_range(shape):
    net = dcgan(input_shape=shape, latent_dim=8, width=8)
    x = net(net.noise(3))
    assert x.shape == (3, *shape)
    assert x.abs().max() <= 1.0
    assert net.discriminator(x).shape == (3, 1)
    # BatchNorm in G, none in D (per-sample normalisation keeps the gradient penalty per sample)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.generator.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.discriminator.modules())
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in net.modules())


def test_wider_dcgan_has_more_parameters():
    small, large = dcgan((1, 28, 28), width=8), dcgan((1, 28, 28), width=16)
    assert sum(p.numel() for p in large.parameters()) > sum(p.numel() for p in small.parameters())


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_mlp_gan_handles_points_and_images(shape):
    net = mlp_gan(input_shape=shape, latent_dim=4, hidden_size=16, num_layers=2)
    x = net(net.noise(5))
    assert x.shape == (5, *shape)
    assert net.discriminator(x).shape == (5, 1)


@pytest.mark.parametrize("build", [mlp_gan, dcgan])
def test_packed_discriminator_scores_groups_of_samples(build):
    shape = (1, 8, 8)
    net = build(input_shape=shape, pack=4)
    packed = net(net.noise(8)).reshape(2, 4, 8, 8)
    assert net.discriminator(packed).shape == (2, 1)
    with pytest.raises(RuntimeError):
        net.discriminator(torch.zeros(2, *shape))  # unpacked input no longer fits


def test_dcgan_refuses_other_sizes_and_bad_keys():
    with pytest.raises(ConfigError, match="8x8, 28x28 or 32x32"):
        dcgan(input_shape=(3, 64, 64))
    with pytest.raises(ConfigError, match=r"model.width=0 must be >= 1"):
        dcgan(input_shape=(1, 8, 8), width=0)
    with pytest.raises(ConfigError, match=r"model.pack=0"):
        mlp_gan(input_shape=(2,), pack=0)


@pytest.mark.parametrize(("build", "shape"), [(mlp_gan, (2,)), (mlp_gan, (1, 8, 8)), (dcgan, (1, 8, 8))])
@pytest.mark.parametrize("pack", [1, 2])
def test_a_conditional_pair_depends_on_the_label(build, shape, pack):
    torch.manual_seed(0)
    net = build(input_shape=shape, num_classes=10, pack=pack, conditional=True).eval()
    z = net.noise(4).repeat(2, 1)  # the same noise for both halves
    labels = torch.tensor([0, 1, 2, 3, 7, 7, 7, 7])
    x = net(z, labels)
    assert x.shape == (8, *shape)
    assert not torch.allclose(x[:4], x[4:])  # same z, other label: another sample
    assert torch.allclose(x[4:], net(z[4:], labels[4:]))  # deterministic given (z, y)
    packed = x.reshape(8 // pack, pack * shape[0], *shape[1:])
    scores, relabelled = net.discriminator(packed, labels), net.discriminator(packed, labels.flip(0))
    assert scores.shape == (8 // pack, 1)
    assert not torch.allclose(scores, relabelled)  # the same samples judged under other labels


def test_an_unconditional_pair_keeps_its_layout_and_conditioning_needs_labels():
    # today's checkpoints name these parameters: the unconditional pair is unchanged by `num_classes`
    plain = mlp_gan(input_shape=(2,), num_classes=8)
    assert not plain.conditional and isinstance(plain.generator, torch.nn.Sequential)
    assert list(plain.state_dict()) == list(mlp_gan(input_shape=(2,)).state_dict())
    with pytest.raises(ConfigError, match=r"model.conditional=true needs data with class labels"):
        mlp_gan(input_shape=(2,), conditional=True)
    with pytest.raises(ConfigError, match=r"at least 2 classes"):
        dcgan(input_shape=(1, 8, 8), num_classes=1, conditional=True)

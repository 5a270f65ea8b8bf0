"""Batch augmentation: random crops are zero-filled translations, flips are mirrors, per image."""

import pytest
import torch
from data_helpers import crop_offsets

from lightsuite.data.augment import random_crop, random_hflip

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


def noise(n: int, device: str = "cpu", dtype=torch.float32) -> torch.Tensor:
    # no zero pixels, so zero-filled borders show; H != W, so a swapped axis shows
    g = torch.Generator().manual_seed(n)
    return torch.randint(1, 256, (n, 3, 6, 5), generator=g).to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_crop_and_flip_keep_shape_dtype_and_device(device, dtype):
    x = noise(8, device, dtype)
    for out in (random_crop(x, 2), random_hflip(x, 0.5), random_hflip(random_crop(x, 3), 1.0)):
        assert out.shape == x.shape
        assert out.dtype == dtype
        assert out.device == x.device


@pytest.mark.parametrize("device", DEVICES)
def test_crop_output_is_a_zero_filled_translation_by_at_most_padding(device):
    torch.manual_seed(0)
    x = noise(300, device)
    offsets = crop_offsets(random_crop(x, 2), x, padding=2)
    assert None not in offsets
    # each image draws its own offset, and every one of the (2p + 1)^2 offsets is reachable
    assert set(offsets) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_crop_without_padding_is_the_identity():
    x = noise(4)
    assert torch.equal(random_crop(x, 0), x)


@pytest.mark.parametrize("device", DEVICES)
def test_hflip_gives_the_image_or_its_mirror(device):
    torch.manual_seed(0)
    x = noise(300, device)
    out = random_hflip(x, 0.5)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    # independent per image: with p=0.5 over 300 images, both outcomes are common
    assert 100 < int(mirrored.sum()) < 200


def test_hflip_probability_bounds():
    x = noise(16)
    assert torch.equal(random_hflip(x, 0.0), x)
    assert torch.equal(random_hflip(x, 1.0), x.flip(-1))

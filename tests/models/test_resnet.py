"""ResNet family: parameter counts against the papers and torchvision, shapes, shortcuts, orderings, init."""

import math

import pytest
import torch
import torchvision
from torch import nn

from lightsuite.models import resnet as R


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(factory, **kwargs) -> nn.Module:
    # Counting needs shapes only; meta tensors skip the allocation and init of the 60M-parameter nets.
    with torch.device("meta"):
        return factory(**kwargs)


# Option A (He et al. 2015, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M). Per extra block in each of
# the 3 stages: 4672 + 18560 + 73984 = 97216 parameters, so count = 269722 + (n - 3) * 97216.
CIFAR_OPTION_A = {
    20: (269_722, 0.27),
    32: (464_154, 0.46),
    44: (658_586, 0.66),
    56: (853_018, 0.85),
    110: (1_727_962, 1.7),
    1202: (19_421_274, 19.4),
}
# Option B adds the two projections 16->32 (512 + 64 BN) and 32->64 (2048 + 128 BN) = 2752 parameters.
CIFAR_OPTION_B = {20: 272_474, 110: 1_730_714, 1202: 19_424_026}
IMAGENET = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(CIFAR_OPTION_A))
def test_cifar_option_a_counts_match_the_paper(depth):
    exact, millions = CIFAR_OPTION_A[depth]
    n = count(build_on_meta(getattr(R, f"resnet{depth}")))
    assert n == exact
    assert round(n / 1e6, 2 if millions < 1 else 1) == millions
    assert n == 269_722 + ((depth - 2) // 6 - 3) * 97_216


@pytest.mark.parametrize("depth", sorted(CIFAR_OPTION_B))
def test_cifar_option_b_adds_exactly_the_two_projections(depth):
    assert count(build_on_meta(R.cifar_resnet, depth=depth, shortcut="B")) == CIFAR_OPTION_B[depth]


@pytest.mark.parametrize("depth", sorted(CIFAR_OPTION_A))
def test_plain_twin_has_the_option_a_count(depth):
    assert count(build_on_meta(getattr(R, f"plain{depth}"))) == CIFAR_OPTION_A[depth][0]


@pytest.mark.parametrize("depth", sorted(IMAGENET))
def test_imagenet_counts_equal_torchvision(depth):
    ours = count(build_on_meta(getattr(R, f"resnet{depth}")))
    theirs = count(build_on_meta(getattr(torchvision.models, f"resnet{depth}"), weights=None))
    assert ours == theirs == IMAGENET[depth]


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_load_and_give_the_same_logits(depth):
    # Same keys, shapes and forward (stride on the bottleneck's 3x3, v1.5) as torchvision's network.
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    ours = R.imagenet_resnet(depth).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_plain_net_has_no_shortcuts_and_differs_from_its_residual_twin():
    torch.manual_seed(0)
    residual, plain = R.resnet20().eval(), R.plain20().eval()
    shortcuts = [m for m in residual.modules() if isinstance(m, R.PadShortcut)]
    assert len(shortcuts) == 2  # the two stage transitions, 16->32 and 32->64
    blocks = [m for m in plain.modules() if isinstance(m, R.BasicBlock)]
    assert len(blocks) == 9 and all(b.downsample is None and b.shortcut == "none" for b in blocks)
    assert not any(isinstance(m, R.PadShortcut) for m in plain.modules())

    plain.load_state_dict(residual.state_dict(), strict=True)  # option A has no parameters of its own
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(x), residual(x), atol=1e-3)


@pytest.mark.parametrize("shortcut", ["none", "B"])
def test_basic_block_is_relu_of_branch_plus_identity(shortcut):
    torch.manual_seed(0)
    block = R.BasicBlock(8, 8, 1, shortcut).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        expected = torch.relu(branch if shortcut == "none" else branch + x)
        torch.testing.assert_close(block(x), expected)


def test_option_b_projects_only_when_shapes_change():
    net = R.cifar_resnet(20, shortcut="B")
    blocks = [m for m in net.modules() if isinstance(m, R.BasicBlock)]
    projections = [b.downsample for b in blocks if b.downsample is not None]
    assert len(projections) == 2
    assert all(isinstance(p[0], nn.Conv2d) and p[0].kernel_size == (1, 1) for p in projections)


def layer4_size(net: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    seen = {}
    net.layer4.register_forward_hook(lambda _m, _i, out: seen.update(size=tuple(out.shape)))
    with torch.no_grad():
        net(x)
    return seen["size"]


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("factory", [R.resnet20, R.plain20, R.resnet18, R.preact_resnet18])
def test_small_images_give_logits(factory, input_shape):
    net = factory(input_shape=list(input_shape), num_classes=7).eval()  # hydra passes lists
    with torch.no_grad():
        assert net(torch.randn(2, *input_shape)).shape == (2, 7)
    assert isinstance(net.maxpool, nn.Identity) and net.conv1.kernel_size == (3, 3)


def test_auto_stem_switches_to_imagenet_at_64_pixels():
    x = torch.randn(1, 3, 64, 64)
    big = R.resnet18(input_shape=(3, 64, 64), num_classes=10).eval()
    assert isinstance(big.maxpool, nn.MaxPool2d) and big.conv1.kernel_size == (7, 7)
    assert layer4_size(big, x) == (1, 512, 2, 2)  # /32
    small = R.resnet18(input_shape=(3, 64, 64), num_classes=10, stem="cifar").eval()
    assert layer4_size(small, x) == (1, 512, 8, 8)  # /8


def test_zero_init_residual_makes_blocks_start_as_their_shortcut():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    for shortcut in ("A", "B"):
        block = R.cifar_resnet(20, shortcut=shortcut, zero_init_residual=True).eval().layer1[0]
        with torch.no_grad():
            torch.testing.assert_close(block(x), torch.relu(x))
    # A downsampling option-A block: subsample space, zero-pad channels, then ReLU.
    block = R.cifar_resnet(20, zero_init_residual=True).eval().layer2[0]
    with torch.no_grad():
        out = block(x)
    torch.testing.assert_close(out[:, :16], torch.relu(x[:, :, ::2, ::2]))
    assert out[:, 16:].abs().max() == 0

    block = R.cifar_resnet(20, shortcut="B").eval().layer1[0]
    with torch.no_grad():
        assert not torch.allclose(block(x), torch.relu(x), atol=1e-3)


def test_zero_init_residual_targets_the_last_layer_of_each_branch():
    net = R.resnet50(zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for b in net.modules() if isinstance(b, R.Bottleneck))
    pre = R.preact_resnet18(input_shape=(3, 32, 32), zero_init_residual=True).eval()
    assert all(b.conv2.weight.abs().sum() == 0 for b in pre.modules() if isinstance(b, R.BasicBlock))
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pre.layer1[0](x), x)  # pre-activation: an exact identity
    with pytest.raises(ValueError, match="plain net"):
        R.plain20(zero_init_residual=True)


def test_preact_block_has_no_relu_after_the_addition():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert R.BasicBlock(16, 16, 1, "B", preact=True).eval()(x).min() < 0
        assert R.BasicBlock(16, 16, 1, "B", preact=False).eval()(x).min() >= 0
        assert R.Bottleneck(16, 4, 1, "B", preact=True).eval()(x).min() < 0
        assert R.Bottleneck(16, 4, 1, "B", preact=False).eval()(x).min() >= 0


def test_preact_normalises_before_each_conv():
    # BN before the conv sees the block's input channels; after it, the conv's output channels.
    assert R.BasicBlock(16, 32, 2, "B", preact=True).bn1.num_features == 16
    assert R.BasicBlock(16, 32, 2, "B", preact=False).bn1.num_features == 32
    net = R.cifar_resnet(20, preact=True)
    assert isinstance(net.bn1, nn.Identity) and isinstance(net.post_norm[0], nn.BatchNorm2d)


def test_bad_arguments_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"6n\+2.*got 21"):
        R.cifar_resnet(21)
    with pytest.raises(ValueError, match=r"\[18, 34, 50, 101, 152\], got 20"):
        R.imagenet_resnet(20)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        R.cifar_resnet(20, shortcut="C")
    with pytest.raises(TypeError, match="no shortcuts"):
        R.plain20(shortcut="B")


def test_convs_use_kaiming_normal_fan_out():
    torch.manual_seed(0)
    conv = R.resnet18().layer3[1].conv1  # 256 -> 256, 3x3: 589,824 weights
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    assert conv.weight.mean().abs().item() < 1e-3

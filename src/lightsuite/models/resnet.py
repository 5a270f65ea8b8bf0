"""ResNets of He et al. 2015 (CIFAR and ImageNet variants), their plain twins and pre-activation versions.

Two block classes, one generic builder (`ResNet`) and one-line named factories (`preset`), as in
torchvision. The shortcut option ("A", "B", "none") and the pre-activation ordering are constructor
arguments. Parameter names follow torchvision (`conv1`, `bn1`, `layer1`..., `downsample`, `fc`), so
torchvision's ImageNet weights load as-is.
"""

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightsuite.errors import ConfigError

SHORTCUTS = ("A", "B", "none")
STEMS = ("cifar", "imagenet")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: parameter-free shortcut that subsamples space and zero-pads the new channels."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def _make_downsample(
    shortcut: str, in_planes: int, out_planes: int, stride: int, preact: bool
) -> nn.Module | None:
    """The shortcut's module when the shapes change; None means identity (or no shortcut for "none")."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
    if shortcut == "none" or (stride == 1 and in_planes == out_planes):
        return None
    if shortcut == "A":
        if out_planes < in_planes:
            raise ValueError(f"option A can only add channels, not go from {in_planes} to {out_planes}")
        return PadShortcut(stride, out_planes - in_planes)
    if preact:
        # The pre-activated input is already normalised, so the projection is a bare conv (He et al. 2016).
        return _conv1x1(in_planes, out_planes, stride)
    return nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class _ResidualBlock(nn.Module):
    """Adds the shortcut to a block's residual branch; subclasses define the branch.

    `drop_rate` (stochastic depth, set by `ResNet`): training drops each sample's branch with that
    probability and scales kept ones by 1 / survival, so evaluation is the expected block, unscaled.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str, preact: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.preact = preact
        # a plain block that changes the shape has nothing to fall back on when deleted
        self.deletable = shortcut != "none" or (stride == 1 and in_planes == planes * self.expansion)
        self.drop_rate = 0.0
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _make_downsample(shortcut, in_planes, planes * self.expansion, stride, preact)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _survivors(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-sample branch scale (0 dropped, 1 / survival kept), or None when nothing is dropped."""
        if not self.training or self.drop_rate == 0.0:
            return None
        survival = 1.0 - self.drop_rate
        kept = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < survival
        return kept.to(x.dtype) / survival

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self._survivors(x)
        if scale is not None and not scale.any():
            return self.without_branch(x)  # the whole batch dropped: the branch is not computed
        # pre-activation is BN-ReLU-conv; a changing shortcut sees the pre-activated input, an identity one
        # the raw input, and no ReLU follows the addition so the identity path stays clean block to block.
        pre = self.relu(self.bn1(x)) if self.preact else x
        out = self.branch(pre)
        if self.shortcut != "none":
            out = out if scale is None else out * scale
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out if self.preact else self.relu(out)

    def without_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block with its residual branch deleted: the shortcut (post-activation: then the ReLU),
        or identity for a plain block that keeps the shape (a lesion study, a dropped block)."""
        if not self.deletable:
            raise ValueError("a plain block that changes the shape has no shortcut to fall back on")
        if self.shortcut == "none" or self.downsample is None:
            return x  # an identity shortcut: the input of a post-activation block is already >= 0
        if self.preact:
            return self.downsample(F.relu(self.bn1(x)))
        return F.relu(self.downsample(x))

    def last_branch_layer(self) -> nn.Module:
        """The layer whose zeroed weight turns the residual branch off (for zero_init_residual)."""
        raise NotImplementedError


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs; used by CIFAR ResNets and ResNet-18/34."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B", preact: bool = False
    ) -> None:
        super().__init__(in_planes, planes, stride, shortcut, preact)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(in_planes if preact else planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:  # x is already relu(bn1(input))
            return self.conv2(self.relu(self.bn2(self.conv1(x))))
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def last_branch_layer(self) -> nn.Module:
        return self.conv2 if self.preact else self.bn2


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (x4); the stride sits on the 3x3 conv as in torchvision's v1.5."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B", preact: bool = False
    ) -> None:
        super().__init__(in_planes, planes, stride, shortcut, preact)
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(in_planes if preact else planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(planes if preact else out_planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:  # x is already relu(bn1(input))
            out = self.conv2(self.relu(self.bn2(self.conv1(x))))
            return self.conv3(self.relu(self.bn3(out)))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def last_branch_layer(self) -> nn.Module:
        return self.conv3 if self.preact else self.bn3


class ResNet(nn.Module):
    """Stem, one stage of blocks per entry of `layers`, global average pool, linear classifier.

    stem "cifar" is a 3x3/1 conv to widths[0] channels (for small images); "imagenet" is the 7x7/2 conv to
    64 channels followed by a 3x3/2 max-pool. The first stage keeps the resolution, later ones halve it.
    With `preact` the cifar stem is a bare conv (the first block normalises) and a BN-ReLU precedes pooling.
    `zero_init_residual` zeroes the last BN of every residual branch, or for pre-activation blocks (whose
    branch ends in a conv) the last conv, so each block starts out as its shortcut.
    `drop_path` p is stochastic depth with Huang et al.'s linear decay: block l of L (counted over all
    stages) drops its branch with probability p * l / L in training.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int,
        in_channels: int,
        stem: str,
        shortcut: str,
        preact: bool = False,
        zero_init_residual: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        if len(layers) != len(widths):
            raise ValueError(f"layers {list(layers)} and widths {list(widths)} must have the same length")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if zero_init_residual and shortcut == "none":
            raise ValueError("zero_init_residual would silence every block of a plain net (shortcut='none')")
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"model.drop_path={drop_path} must be in [0, 1) (the last block's drop rate)")
        if drop_path > 0 and shortcut == "none":
            raise ConfigError(
                f"model.drop_path={drop_path} on a plain net (shortcut='none') would drop the whole signal; "
                "use model.drop_path=0 or a residual model (model=resnet20)"
            )

        stem_width = widths[0] if stem == "cifar" else 64
        stem_norm = stem == "imagenet" or not preact
        if stem == "cifar":
            self.conv1 = _conv3x3(in_channels, stem_width)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width) if stem_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if stem_norm else nn.Identity()
        pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.maxpool = pool if stem == "imagenet" else nn.Identity()

        in_planes = stem_width
        self.stage_names: list[str] = []
        for i, (num_blocks, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_planes, width, stride, shortcut, preact))
                in_planes = width * block.expansion
            self.stage_names.append(f"layer{i + 1}")
            self.add_module(self.stage_names[-1], nn.Sequential(*blocks))

        blocks = [m for m in self.modules() if isinstance(m, _ResidualBlock)]
        for depth, m in enumerate(blocks, start=1):
            m.drop_rate = drop_path * depth / len(blocks)

        final_act = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True))
        self.post_norm = final_act if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _ResidualBlock):
                    nn.init.zeros_(m.last_branch_layer().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = self.avgpool(self.post_norm(x))
        return self.fc(torch.flatten(x, 1))


def _shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {list(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def cifar_resnet(
    depth: int,
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    shortcut: str = "A",
    preact: bool = False,
    zero_init_residual: bool = False,
    drop_path: float = 0.0,
) -> ResNet:
    """The 6n+2-layer CIFAR ResNet of He et al. 2015, sec. 4.2: 3 stages of n BasicBlocks, 16/32/64 wide."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, n >= 1 (20, 32, 44, 56, 110, 1202), got {depth}")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock,
        [n, n, n],
        [16, 32, 64],
        num_classes=num_classes,
        in_channels=_shape(input_shape)[0],
        stem="cifar",
        shortcut=shortcut,
        preact=preact,
        zero_init_residual=zero_init_residual,
        drop_path=drop_path,
    )


IMAGENET_DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def imagenet_resnet(
    depth: int,
    *,
    input_shape: Sequence[int] = (3, 224, 224),
    num_classes: int = 1000,
    stem: str = "auto",
    preact: bool = False,
    zero_init_residual: bool = False,
    drop_path: float = 0.0,
) -> ResNet:
    """The ImageNet ResNets (option B shortcuts, 64/128/256/512 wide).

    stem="auto" uses the 3x3/1 cifar stem below 64 pixels of height: the 7x7/2 conv and max-pool would
    shrink an 8x8 or 28x28 image to almost nothing before the first block.
    """
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, got {depth}")
    in_channels, height, _ = _shape(input_shape)
    if stem == "auto":
        stem = "imagenet" if height >= 64 else "cifar"
    block, layers = IMAGENET_DEPTHS[depth]
    return ResNet(
        block,
        layers,
        [64, 128, 256, 512],
        num_classes=num_classes,
        in_channels=in_channels,
        stem=stem,
        shortcut="B",
        preact=preact,
        zero_init_residual=zero_init_residual,
        drop_path=drop_path,
    )


class Preset(partial):
    """`builder(depth, **fixed)` under a name (`resnet20 = preset("resnet20", cifar_resnet, 20)`).

    A `functools.partial`: its signature is the builder's less what it fixes, which is what the config
    checker reads, with no function's metadata rewritten. A fixed keyword cannot be passed again:
    `plain20(shortcut="B")` would otherwise quietly build a residual net.
    """

    __name__: str

    def __call__(self, /, *args: Any, **kwargs: Any) -> ResNet:
        clash = sorted(set(kwargs) & set(self.keywords))
        if clash:
            what = "no shortcuts" if "shortcut" in clash else f"a fixed {', '.join(clash)}"
            depth = self.args[0] if self.args else ""
            name = getattr(self, "__name__", "this network")
            raise TypeError(f"{name} has {what}; use {self.func.__name__}({depth}, ...) instead")
        return super().__call__(*args, **kwargs)


def preset(name: str, builder: Any, depth: int, **fixed: Any) -> Preset:
    """A named factory; the name shows in messages and names cached FID classifiers (pickled with it)."""
    made = Preset(builder, depth, **fixed)
    made.__name__ = name
    return made


# CIFAR ResNets (He et al. 2015, sec. 4.2) and their plain twins (no shortcuts: the degradation problem)
resnet20 = preset("resnet20", cifar_resnet, 20)
resnet32 = preset("resnet32", cifar_resnet, 32)
resnet44 = preset("resnet44", cifar_resnet, 44)
resnet56 = preset("resnet56", cifar_resnet, 56)
resnet110 = preset("resnet110", cifar_resnet, 110)
resnet1202 = preset("resnet1202", cifar_resnet, 1202)
plain20 = preset("plain20", cifar_resnet, 20, shortcut="none")
plain32 = preset("plain32", cifar_resnet, 32, shortcut="none")
plain44 = preset("plain44", cifar_resnet, 44, shortcut="none")
plain56 = preset("plain56", cifar_resnet, 56, shortcut="none")
plain110 = preset("plain110", cifar_resnet, 110, shortcut="none")
plain1202 = preset("plain1202", cifar_resnet, 1202, shortcut="none")
resnet18 = preset("resnet18", imagenet_resnet, 18)
resnet34 = preset("resnet34", imagenet_resnet, 34)
resnet50 = preset("resnet50", imagenet_resnet, 50)
resnet101 = preset("resnet101", imagenet_resnet, 101)
resnet152 = preset("resnet152", imagenet_resnet, 152)
# pre-activation blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks")
preact_resnet18 = preset("preact_resnet18", imagenet_resnet, 18, preact=True)
preact_resnet34 = preset("preact_resnet34", imagenet_resnet, 34, preact=True)
preact_resnet50 = preset("preact_resnet50", imagenet_resnet, 50, preact=True)
preact_resnet101 = preset("preact_resnet101", imagenet_resnet, 101, preact=True)
preact_resnet152 = preset("preact_resnet152", imagenet_resnet, 152, preact=True)

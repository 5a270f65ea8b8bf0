"""What the tasks do differently on a CUDA device to go faster: fused optimizers and channels_last.

Both are decided by plain functions of their inputs (the optimizer's class and keywords, the device),
so that the decisions are tested without a GPU; on the CPU neither changes anything a run computes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

# keywords with which a user has already chosen the implementation (foreach=False: the for-loop one;
# foreach=True cannot be combined with fused=True), or ruled fused kernels out (differentiable=True)
_CHOSEN = ("fused", "foreach", "differentiable")


def fused_kwargs(optimizer_cls: Any, device_type: str, keywords: Mapping[str, Any]) -> dict[str, Any]:
    """`{"fused": True}` where `optimizer_cls` takes `fused`, the parameters are on CUDA, and the config
    (`keywords`) chose no implementation itself; `{}` otherwise.

    One fused kernel updates every parameter (SGD, Adam, AdamW, Adagrad in torch 2.x) instead of a few
    per tensor; on the CPU the default implementation is kept, so CPU runs stay as they were.
    """
    if device_type != "cuda" or any(keywords.get(key) is not None for key in _CHOSEN):
        return {}
    try:
        takes_fused = "fused" in inspect.signature(optimizer_cls).parameters
    except (TypeError, ValueError):  # not a class or function with a signature
        return {}
    return {"fused": True} if takes_fused else {}


def make_optimizer(factory: Callable[..., Optimizer], params: Iterable[Tensor]) -> Optimizer:
    """`factory(params)`, fused where `fused_kwargs` says so (a `_partial_` of a torch optimizer names
    its class; any other factory is called as it is)."""
    params = list(params)
    if not isinstance(factory, functools.partial) or not params:
        return factory(params)
    devices = {p.device.type for p in params}
    floating = all(p.is_floating_point() for p in params)
    device = devices.pop() if len(devices) == 1 and floating else "mixed"
    return factory(params, **fused_kwargs(factory.func, device, factory.keywords))


def uses_channels_last(setting: bool | None, device: torch.device, net: nn.Module) -> bool:
    """Whether `net` runs in channels_last: `setting` if given, else on CUDA for a network with 4-D
    (convolution) weights, whose cuDNN kernels are fastest in that layout (tensor cores)."""
    if setting is not None:
        return setting
    return device.type == "cuda" and any(p.dim() == 4 for p in net.parameters())


def to_channels_last(x: Tensor) -> Tensor:
    """An image batch (N, C, H, W) in channels_last memory (the same values); other tensors unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def optimizer_params(opt: Any) -> list[Tensor]:
    """Every parameter an optimizer (or Lightning's wrapper of one) updates."""
    return [p for group in opt.param_groups for p in group["params"]]


def named_rates(optimizers: Mapping[str, Optimizer]) -> list[dict[str, Any]]:
    """Constant schedules (factor 1, never changing the rate) that only name each optimizer's rate.

    Lightning's LearningRateMonitor names a rate after its scheduler's `name`, else after the
    optimizer class (`lr-Adam`, `lr-Adam-1`): a GAN's rates read `lr-G` and `lr-D` this way.
    """
    from torch.optim.lr_scheduler import ConstantLR

    return [
        {"scheduler": ConstantLR(opt, factor=1.0, total_iters=0), "name": name}
        for name, opt in optimizers.items()
    ]

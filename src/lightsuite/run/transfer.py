"""Transfer learning: a network's first weights from another run, and which of it trains when.

`task.init_from=PATH` copies into the network every tensor of PATH whose name and shape match, and
keeps the rest as built (a head for another number of classes), saying which in one line. PATH is
one of the suite's checkpoints (the tensors under `net.`) or a plain state dict of the network:
torchvision's `resnet18-*.pth` files are that for `model=resnet18` ... `resnet152`, whose parameter
names are torchvision's. Unlike `ckpt_path` (a resume), no optimizer state or epoch comes along.

`task.freeze=backbone` trains only the head, the network's child module named `fc` (ResNets) or
`head` (recurrent nets), until `task.unfreeze_at_epoch`, then everything, the backbone at
`task.unfreeze_lr_factor` x the head's lr. Lightning's `BaseFinetuning` freezes and unfreezes;
the backbone's parameters sit in the optimizer from the start as a group of their own
(`BackboneGroup`), so the lr schedule scales both groups alike and a resumed optimizer finds the
groups it saved. These keys are run code's, taken off the `task` node before the task is built
(`run/build.py`), and typed by `TransferOptions`, which the config checker reads.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from lightsuite.errors import ConfigError
from lightsuite.run.build import build
from lightsuite.run.checkpoints import checkpoint_record, load_checkpoint
from lightsuite.run.resume import resume_checkpoint

KEY = "task.init_from"
# the child of a network that is its head, in the order looked for
HEAD_NAMES = ("fc", "head")
# names listed in the one line before the rest are counted
SHOWN = 8


@dataclass(frozen=True)
class TransferOptions:
    """The transfer keys of a `task` node, with the types the config checker holds them to."""

    init_from: str | None = None
    freeze: Literal["backbone"] | None = None
    unfreeze_at_epoch: int | None = None
    unfreeze_lr_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.unfreeze_at_epoch is not None and self.freeze is None:
            raise ConfigError(
                f"task.unfreeze_at_epoch={self.unfreeze_at_epoch} has nothing to unfreeze: "
                "add task.freeze=backbone (or drop task.unfreeze_at_epoch)"
            )
        if self.unfreeze_at_epoch is not None and self.unfreeze_at_epoch < 1:
            raise ConfigError(
                f"task.unfreeze_at_epoch={self.unfreeze_at_epoch} must be 1 or more "
                "(to train the whole network from the start, drop task.freeze)"
            )
        if not self.unfreeze_lr_factor > 0:
            raise ConfigError(
                f"task.unfreeze_lr_factor={self.unfreeze_lr_factor} must be > 0 "
                "(the backbone's lr as a multiple of the head's), e.g. 0.1"
            )

    @classmethod
    def of(cls, task: DictConfig) -> TransferOptions:
        return cls(**{f.name: task[f.name] for f in fields(cls) if task.get(f.name) is not None})


def prepare_transfer(cfg: DictConfig, net: nn.Module) -> dict[str, Any]:
    """Initialise `net` from `task.init_from` and return the task keywords freezing needs.

    For a run that fits (`train=true`). One that resumes reads no `init_from` (its weights come
    from the checkpoint, and the file may be gone by a requeue); a dry run reads no file, as for
    `ckpt_path`; a sweep's preflight reads it without a word, to refuse a bad path before any job.
    """
    options = TransferOptions.of(cfg.task)
    if options.init_from is not None and not cfg.get("dry_run", False) and not (resumes := _resumes(cfg)):
        line = init_network(net, options.init_from)
        if resumes is not None:
            announce(line)
    if options.freeze is None:
        return {}
    head = head_name(net)
    if "optimizer" not in cfg.task:
        raise ConfigError("task.freeze=backbone needs a task with one `task.optimizer`; drop task.freeze")
    optimizer = build(cfg.task.optimizer, "task.optimizer")
    return {"optimizer": BackboneGroup(optimizer, getattr(net, head), options.unfreeze_lr_factor)}


def _resumes(cfg: DictConfig) -> bool | None:
    """Whether this run continues a checkpoint; None in a sweep's preflight (no job, no run dir yet)."""
    try:
        return resume_checkpoint(cfg) is not None
    except InterpolationResolutionError:
        return None


def freezing_callbacks(cfg: DictConfig, task: pl.LightningModule) -> list[pl.Callback]:
    """The callback that freezes the backbone (unfrozen at `task.unfreeze_at_epoch`), or none."""
    options = TransferOptions.of(cfg.task)
    if options.freeze is None:
        return []
    # the frozen batch norms are in evaluation mode on purpose (`BackboneFreeze`)
    warnings.filterwarnings("ignore", r".*module\(s\) in eval mode at the start of training.*")
    return [BackboneFreeze(head_name(task.net), options.unfreeze_at_epoch, options.unfreeze_lr_factor)]


def head_name(net: nn.Module) -> str:
    """The name of the child module that is `net`'s head; one line where there is none."""
    for name in HEAD_NAMES:
        child = getattr(net, name, None)
        if isinstance(child, nn.Module) and any(True for _ in child.parameters()):
            return name
    raise ConfigError(
        f"task.freeze=backbone: {type(net).__name__} has no head to train alone (a child module "
        f"named {' or '.join(HEAD_NAMES)}, as ResNets and recurrent nets have); drop task.freeze"
    )


def init_network(net: nn.Module, path: str | Path) -> str:
    """Copy the tensors of `path` that match `net`'s by name and shape; the line that says what was not."""
    weights, holds = network_weights(path, net)
    own = net.state_dict()
    loaded = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not loaded:
        raise ConfigError(
            f"{KEY}={path} shares no tensor (by name and shape) with this {type(net).__name__}: it holds "
            f"{holds}; pass a checkpoint of the same kind of network"
        )
    net.load_state_dict(loaded, strict=False)
    reshaped = [k for k in own if k in weights and k not in loaded]
    absent = [k for k in own if k not in weights]
    unused = len([k for k in weights if k not in own])
    line = f"init_from: loaded {len(loaded)} tensors from {path}"
    if not reshaped and not absent:
        line = f"init_from: loaded all {len(loaded)} tensors of the network from {path}"
    if reshaped:
        line += f"; kept fresh (shape differs): {_names(reshaped)}"
    if absent:
        line += f"; kept fresh (not in the file): {_names(absent)}"
    if unused:
        line += f"; {unused} tensors of the file unused"
    return line


def _names(keys: list[str]) -> str:
    shown = ", ".join(f"net.{k}" for k in keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def network_weights(path: str | Path, net: nn.Module) -> tuple[dict[str, Tensor], str]:
    """The network's tensors in `path`, named as in `net.state_dict()`, and what they are of, in words.

    A suite checkpoint holds the task's state: the network's tensors are those under `net.`. A
    plain state dict (torchvision's weights files, `torch.save(net.state_dict())`) holds them as
    they are, or under `module.` when saved from a DataParallel.
    """
    file = Path(path).expanduser()
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:
        raw = load_checkpoint(path, KEY)  # its one line: no such file, a folder, unreadable, not torch's
    if isinstance(raw, Mapping) and raw and all(isinstance(v, Tensor) for v in raw.values()):
        names = {k.removeprefix("module."): v for k, v in raw.items()}
        if any(k.startswith("net.") for k in names):  # a task's state_dict saved by hand
            names = {k.removeprefix("net."): v for k, v in names.items() if k.startswith("net.")}
        elif _preactivated(net) and not any(k.startswith("post_norm.") for k in names):
            raise ConfigError(
                f"{KEY}={path} holds a post-activation ResNet's weights (torchvision's layout), but "
                "model=preact_* has pre-activation blocks; use model=resnet18 (or 34, 50, 101, 152)"
            )
        return names, f"a state dict of {len(names)} tensors"
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise ConfigError(
            f"{KEY}={path} is neither a lightsuite checkpoint nor a state dict of tensors; "
            "pass a .ckpt written by lightsuite-train or a weights file such as torchvision's"
        )
    trained = checkpoint_record(raw, path, KEY)["config"].get("model", {}).get("_target_", "?")
    weights = {k.removeprefix("net."): v for k, v in raw["state_dict"].items() if k.startswith("net.")}
    return weights, f"a {trained.rsplit('.', 1)[-1]} network"


def _preactivated(net: nn.Module) -> bool:
    return any(getattr(m, "preact", False) is True for m in net.modules())


@rank_zero_only
def announce(line: str) -> None:
    print(line, file=sys.stderr)


class BackboneGroup:
    """The task's optimizer, built with the head's parameters as group 0 and the rest as group 1.

    Group 1 starts at `factor` x group 0's lr; any lr schedule then scales both alike. Frozen
    parameters get no gradient, so the optimizer leaves them alone (weight decay included).
    """

    def __init__(self, make: Callable[..., Optimizer], head: nn.Module, factor: float) -> None:
        self.make, self.head, self.factor = make, head, factor

    def __call__(self, params: Iterable[Tensor]) -> Optimizer:
        params = list(params)
        in_head = {id(p) for p in self.head.parameters()}
        head = [p for p in params if id(p) in in_head]
        backbone = [p for p in params if id(p) not in in_head]
        optimizer = self.make([{"params": head}, {"params": backbone}])
        optimizer.param_groups[1]["lr"] = optimizer.param_groups[0]["lr"] * self.factor
        return optimizer


class BackboneFreeze(BaseFinetuning):
    """Freezes everything of `task.net` but its head before training; unfreezes it at `unfreeze_at_epoch`.

    Frozen means parameters and batch-norm statistics alike (`train_bn=False`), and its batch
    norms normalise with those statistics, in evaluation mode. A resumed run's
    setup freezes again; the first epoch at or past `unfreeze_at_epoch` unfreezes again, so a
    resume lands where the uninterrupted run was.
    """

    def __init__(self, head: str, unfreeze_at_epoch: int | None, lr_factor: float) -> None:
        super().__init__()
        self.head, self.unfreeze_at_epoch, self.lr_factor = head, unfreeze_at_epoch, lr_factor

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.net, train_bn=False)
        self.make_trainable(getattr(pl_module.net, self.head))
        # a frozen backbone computes as it will when tested: its batch norms use their running
        # statistics, not the batch's (Lightning keeps a module's mode across validation)
        _batch_norms(pl_module.net, training=False)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch:
            return
        if not all(p.requires_grad for p in pl_module.net.parameters()):
            self.make_trainable(pl_module.net)
            _batch_norms(pl_module.net, training=True)
            announce(
                f"epoch {epoch}: backbone unfrozen (task.unfreeze_at_epoch={self.unfreeze_at_epoch}), "
                f"its lr {self.lr_factor:g} x the head's"
            )


def _batch_norms(net: nn.Module, training: bool) -> None:
    for module in net.modules():
        if isinstance(module, _BatchNorm):
            module.train(training)

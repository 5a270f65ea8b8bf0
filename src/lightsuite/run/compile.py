"""`compile=auto|true|false`: torch.compile of a task's networks for the fit, never of its checkpoint.

Each network is compiled in place (`nn.Module.compile()`): its state dict keeps its keys (no
`_orig_mod.` prefix), so a checkpoint of a compiled run resumes uncompiled and the other way round,
and `lightsuite-eval` / `lightsuite-sample` (which never compile) read either. Only training steps
run compiled: validation runs eager (eval mode and no grad would be a second graph, a second
compile, for a few batches an epoch) and compiling ends with the fit, so the test after it is eager.

`compile=auto` compiles when the run's optimizer steps exceed its family's break-even on this
accelerator (`BREAK_EVEN`, measured in docs/performance.md#compiling), and says which it chose in
one line. torch.compile is lazy: a network that dynamo or inductor cannot compile fails at its
first call, so each compiled call is guarded (`EagerOnFailure`) and returns to eager for the rest of
the run with one line.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from lightsuite.models.gan import GAN
from lightsuite.models.rnn import EquationLSTM
from lightsuite.tasks.classification import ClassificationTask
from lightsuite.tasks.gan.task import GANTask
from lightsuite.tasks.sequence import SequenceTask

# torch.compile's backend; tests swap in one that raises, to see the fallback
BACKEND: Any = "inductor"

# optimizer steps after which compiling repays its compile time, per accelerator and case (a family at
# the shapes that decide it), measured with an empty inductor cache (docs/performance.md#compiling). On
# the CPU the GAN steps and those of torch's fused RNN/LSTM/GRU (which dynamo leaves out of its graph)
# measured slower compiled: tiny networks, whose compiled call's guards and wrappers cost more than
# fusion saves
BREAK_EVEN: dict[str, dict[str, float]] = {
    "cpu": {
        "classification, images under 32 px": 5_000,
        "classification, images of 32 px and up": 250,
        "gan": math.inf,
        "sequence, fused cells": math.inf,
        "sequence, lstm_equations": 7_700,
    },
}


def case_of(task: Any, datamodule: Any = None) -> str:
    """The `BREAK_EVEN` case of a fit of `task` on `datamodule`; its task's class name if none fits."""
    if isinstance(task, ClassificationTask):
        shape = getattr(datamodule, "input_shape", None) or getattr(task, "input_shape", None) or (0,)
        return "classification, images " + ("under 32 px" if shape[-1] < 32 else "of 32 px and up")
    if isinstance(task, GANTask):
        return "gan"
    if isinstance(task, SequenceTask):
        unrolled = any(isinstance(m, EquationLSTM) for m in task.net.modules())
        return "sequence, " + ("lstm_equations" if unrolled else "fused cells")
    return type(task).__name__


def _rounded(steps: float) -> str:
    return f"{steps / 1000:.1f}k" if steps >= 1000 else f"{steps:.0f}"


def compile_decision(setting: bool | str, case: str, steps: float, accelerator: str) -> tuple[bool, str]:
    """Whether to compile, and the line that says why: `steps` are the fit's estimated optimizer steps,
    `case` a key of `BREAK_EVEN` (`case_of`)."""
    if setting is True:
        return True, "compile=true: compiling the networks for the fit"
    if setting is False:
        return False, ""
    where = f"on {accelerator} for {case}"
    pays = BREAK_EVEN.get(accelerator, {}).get(case)
    if pays is None:
        return False, f"compile=auto: eager (no measured break-even {where}; compile=true compiles anyway)"
    if math.isinf(pays):
        return False, f"compile=auto: eager (compiled steps measured no faster {where})"
    chosen = steps >= pays
    how = "compiled" if chosen else "eager"
    pays_after = f"compiling pays after ~{_rounded(pays)} steps {where}"
    return chosen, f"compile=auto: {how} (~{_rounded(steps)} steps; {pays_after})"


def networks(task: Any) -> dict[str, nn.Module]:
    """The networks a fit of `task` runs: a GAN's two (its discriminator left out under a gradient
    penalty, whose double backward torch.compile does not support), any other task's `net`."""
    net = getattr(task, "net", None)
    if isinstance(net, GAN):
        nets = {"generator": net.generator, "discriminator": net.discriminator}
        if getattr(task, "loss", None) == "wgan_gp" and getattr(task, "gp_weight", 0) > 0:
            del nets["discriminator"]
        return nets
    return {"net": net} if isinstance(net, nn.Module) else {}


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr)


class EagerOnFailure:
    """A network's compiled call that, when dynamo or inductor fails on it, runs eager from then on.

    A failure of the network itself (a shape error) fails the eager call too and is raised from there,
    as an uncompiled run would raise it; only a failure of the compiler is turned into one line.
    """

    def __init__(self, net: nn.Module, name: str) -> None:
        net.compile(backend=BACKEND)  # in place: `net(x)` goes through `net._compiled_call_impl`
        self.net, self.name, self.compiled = net, name, net._compiled_call_impl
        self.failed = False
        self.attach(True)

    def attach(self, on: bool) -> None:
        """Route `net(...)` through the compiled call (on) or the plain one (off)."""
        self.net._compiled_call_impl = self if on and not self.failed else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            out = self.net._call_impl(*args, **kwargs)
            self.failed = True
            self.attach(False)
            cause = _cause(error)
            print(
                f"compile: {self.name} runs eager for the rest of the run, torch.compile failed: {cause}",
                file=sys.stderr,
            )
            return out


def _cause(error: BaseException) -> str:
    """The compiler's own error in one line: dynamo wraps a backend's in `inner_exception`."""
    inner = getattr(error, "inner_exception", None) or error.__cause__ or error
    lines = [line for line in str(inner).splitlines() if line.strip()]
    return f"{type(inner).__name__}: {lines[0].strip()}" if lines else type(inner).__name__


class CompileNetworks(pl.Callback):
    """Compiles the task's networks when the fit starts (`compile_decision`), eager outside training steps."""

    def __init__(self, setting: bool | str) -> None:
        self.setting = setting
        self.guards: list[EagerOnFailure] = []
        self.line = ""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        case = case_of(pl_module, getattr(trainer, "datamodule", None))
        steps = _optimizer_steps(trainer, pl_module)
        accelerator = trainer.strategy.root_device.type
        chosen, self.line = compile_decision(self.setting, case, steps, accelerator)
        if self.line:
            _say(self.line)
        if chosen:
            self.guards = [EagerOnFailure(net, name) for name, net in networks(pl_module).items()]

    def _attach(self, on: bool) -> None:
        for guard in self.guards:
            guard.attach(on)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._attach(False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # back to the compiled call for the fit's next training steps (the sanity check's end included)
        self._attach(trainer.state.fn == TrainerFn.FITTING)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._attach(False)
        self.guards = []

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.on_fit_end(trainer, pl_module)


def _optimizer_steps(trainer: pl.Trainer, task: Any) -> float:
    """The fit's optimizer steps: Lightning's estimate times the updates a task makes per Lightning step
    (a GAN's rounds, a sequence task's batches per group)."""
    steps = float(trainer.estimated_stepping_batches)
    sampler = getattr(trainer.train_dataloader, "sampler", None)
    if hasattr(sampler, "batches_per_epoch") and len(sampler):
        steps *= sampler.batches_per_epoch / len(sampler)
    return steps * getattr(task, "rounds_per_step", 1)


def compile_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The callback that compiles the task's networks for this fit (none with `compile=false`)."""
    setting = cfg.get("compile", "auto")
    return [] if setting is False else [CompileNetworks(setting)]

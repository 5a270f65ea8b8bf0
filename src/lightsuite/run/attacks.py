"""`lightsuite-eval ckpt_path=... attack=fgsm|pgd attack.eps=[0,0.02,0.05,0.1]`: robust accuracy by budget.

An `EvalStudy` (see `lightsuite.eval`): after the plain test, every test image is attacked at each
budget (L-inf, in [0, 1] pixels, `tasks/attacks.py`) and the network's accuracy on the adversarial
images is reported as `attack/<name>_acc_eps<eps>` (eps=0 is the clean accuracy), with a table
(`attack_<name>.csv`, `.md`) and a plot of accuracy against eps (`attack_<name>.png`) in the run dir.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from lightsuite.errors import ConfigError
from lightsuite.io import csv_text, replacing, write_text
from lightsuite.reporting.tables import markdown
from lightsuite.tasks.attacks import PixelScaling, check_attack, fgsm, pgd
from lightsuite.tasks.classification import ClassificationTask


def metric_key(name: str, eps: float) -> str:
    """`attack/pgd_acc_eps0.05`: no `@`, `=` or `,`, which Hydra overrides and CSV headers trip on."""
    return f"attack/{name}_acc_eps{eps:g}"


class AttackStudy:
    """Accuracy on the test set under one attack at each budget in `eps`; subclasses say which attack."""

    name = ""

    def __init__(self, eps: float | Sequence[float], seed: int = 0) -> None:
        budgets = [float(e) for e in eps] if isinstance(eps, Sequence) else [float(eps)]
        if not budgets:
            raise ConfigError("attack.eps=[] lists no budget; pass e.g. attack.eps=[0,0.02,0.05,0.1]")
        for e in budgets:
            check_attack(e, 1, None, "attack.")
        self.eps = sorted(set(budgets))
        self.seed = seed

    def attack(self, net: nn.Module, x: Tensor, y: Tensor, scaling: PixelScaling, eps: float) -> Tensor:
        raise NotImplementedError

    def check(self, task: pl.LightningModule) -> None:
        if not isinstance(task, ClassificationTask):
            raise ConfigError(
                f"attack={self.name} attacks image classifiers, and this checkpoint is a "
                f"{type(task).__name__}; pass a checkpoint of task=classification, or drop attack="
            )

    def __call__(
        self, task: pl.LightningModule, datamodule: pl.LightningDataModule, output_dir: Path
    ) -> dict[str, float]:
        if not hasattr(datamodule, "transform_batch"):
            raise ConfigError(
                f"attack={self.name} needs an image DataModule (data=digits, mnist, cifar10, ...)"
            )
        accuracy = self.robust_accuracy(task.net.eval(), datamodule)
        self.write(accuracy, Path(output_dir))
        return {metric_key(self.name, eps): acc for eps, acc in accuracy.items()}

    def robust_accuracy(self, net: nn.Module, datamodule: pl.LightningDataModule) -> dict[float, float]:
        """Accuracy at each eps over the whole test loader, batches as the test stage sees them."""
        device = next(net.parameters()).device
        normalize = functools.partial(datamodule.transform_batch, train=False)
        scaling = PixelScaling.of(normalize, datamodule.input_shape[0]).to(device)
        torch.manual_seed(self.seed)  # PGD's random starts
        correct, total = dict.fromkeys(self.eps, 0), 0
        for images, labels in datamodule.test_dataloader():
            x, y = normalize(images.to(device)), labels.to(device)
            for eps in self.eps:
                adv = self.attack(net, x, y, scaling, eps)
                with torch.no_grad():
                    correct[eps] += int((net(adv).argmax(dim=1) == y).sum())
            total += len(y)
        return {eps: correct[eps] / max(total, 1) for eps in self.eps}

    def write(self, accuracy: dict[float, float], output_dir: Path) -> None:
        """`attack_<name>.csv` and `.md` (eps, accuracy) and `attack_<name>.png` (accuracy against eps)."""
        stem = output_dir / f"attack_{self.name}"
        rows = [(f"{eps:g}", f"{acc:.4f}") for eps, acc in accuracy.items()]
        write_text(stem.with_suffix(".csv"), csv_text([("eps", "acc"), *rows]))
        write_text(stem.with_suffix(".md"), markdown(("eps", f"{self.name} acc"), rows))
        # a Figure without pyplot draws on the Agg canvas: no global state, no display needed
        fig = Figure(figsize=(4.5, 3.2), dpi=120)
        ax = fig.subplots()
        ax.plot(list(accuracy), list(accuracy.values()), marker="o")
        ax.set(xlabel="eps (L-inf, [0, 1] pixels)", ylabel="test accuracy", ylim=(0, 1.02))
        ax.set_title(f"{self.name.upper()} robust accuracy")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with replacing(stem.with_suffix(".png")) as tmp:
            fig.savefig(tmp, format="png")


class FGSMStudy(AttackStudy):
    """One signed-gradient step of eps (Goodfellow et al. 2015)."""

    name = "fgsm"

    def attack(self, net: nn.Module, x: Tensor, y: Tensor, scaling: PixelScaling, eps: float) -> Tensor:
        return fgsm(net, x, y, scaling, eps)


class PGDStudy(AttackStudy):
    """`steps` projected signed-gradient steps from a random start in the eps-ball (Madry et al. 2018)."""

    name = "pgd"

    def __init__(
        self,
        eps: float | Sequence[float],
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(eps, seed)
        check_attack(0.0, steps, step_size, "attack.")
        self.steps, self.step_size, self.random_start = steps, step_size, random_start

    def attack(self, net: nn.Module, x: Tensor, y: Tensor, scaling: PixelScaling, eps: float) -> Tensor:
        return pgd(net, x, y, scaling, eps, self.steps, self.step_size, self.random_start)

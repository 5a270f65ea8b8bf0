"""`lightsuite-eval ckpt_path=... lesion=blocks`: delete residual blocks of a trained classifier at test time.

Veit et al. 2016 ("Residual networks behave like ensembles of relatively shallow networks") delete one
block of a trained ResNet and see the test error barely move, while a plain net falls apart. Deleting a
ResNet block leaves its shortcut (the residual branch removed); in a plain net a block that keeps the
shape becomes identity, and a block that changes it cannot be deleted (the table says so). The rest of
the network is untouched: a deleted block's module is swapped out of its stage for the time of one
pass over the test set, and put back after.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.utilities import move_data_to_device
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightsuite.errors import ConfigError
from lightsuite.io import csv_text, replacing, write_text
from lightsuite.models.resnet import BasicBlock, Bottleneck
from lightsuite.reporting.tables import markdown
from lightsuite.tasks.classification import ClassificationTask

# the files written into the run dir
TABLE, RANDOM_TABLE, MARKDOWN, FIGURE = "lesion.csv", "lesion_random.csv", "lesion.md", "lesion.png"


@dataclass(frozen=True)
class Site:
    """Where a block sits: `stage[index]` is `block`, named `stage2.block3` (both counted from 1)."""

    name: str
    stage: nn.Sequential
    index: int
    block: BasicBlock | Bottleneck


def block_sites(net: nn.Module) -> list[Site]:
    """The residual blocks of `net` in forward order, stage by stage (any nn.Sequential holding blocks)."""
    stages = [
        m for m in net.modules() if isinstance(m, nn.Sequential) and any(_is_block(c) for c in m.children())
    ]
    sites = []
    for i, stage in enumerate(stages, start=1):
        blocks = [(index, m) for index, m in enumerate(stage) if _is_block(m)]
        sites += [Site(f"stage{i}.block{j}", stage, index, m) for j, (index, m) in enumerate(blocks, start=1)]
    return sites


def _is_block(module: nn.Module) -> bool:
    return isinstance(module, (BasicBlock, Bottleneck))


class _Deleted(nn.Module):
    """Stands in for a deleted block: only its shortcut runs, the block's own forward never does."""

    def __init__(self, block: BasicBlock | Bottleneck) -> None:
        super().__init__()
        self.without_branch = block.without_branch  # a bound method: the block is not a submodule here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.without_branch(x)


@contextmanager
def deleted(sites: Sequence[Site]) -> Iterator[None]:
    """Delete the blocks at `sites` inside the block; the very same modules are put back after."""
    for site in sites:
        if not site.block.deletable:
            raise ValueError(f"{site.name} changes the shape and has no shortcut: it cannot be deleted")
        site.stage[site.index] = _Deleted(site.block)
    try:
        yield
    finally:
        for site in sites:
            site.stage[site.index] = site.block


class LesionStudy:
    """`lesion=blocks`: test accuracy with each deletable block deleted in turn, and optionally with k
    random blocks deleted (k = 1..`random_k`, `samples` draws each, Veit et al. Fig. 4).

    Metrics: `lesion/acc_intact`, `lesion/acc_without_<stage.block>`, `lesion/mean_drop` and
    `lesion/max_drop` (intact minus lesioned accuracy over single deletions), `lesion/acc_random_k<k>`.
    `limit_batches` caps the test batches of each pass (a quick look at a large test set).
    """

    def __init__(
        self, random_k: int | None = None, samples: int = 10, seed: int = 0, limit_batches: int | None = None
    ) -> None:
        if random_k is not None and random_k < 1:
            raise ConfigError(
                f"lesion.random_k={random_k} must be at least 1, or null for single deletions only"
            )
        if samples < 1:
            raise ConfigError(f"lesion.samples={samples} must be at least 1 (random draws per k)")
        if limit_batches is not None and limit_batches < 1:
            raise ConfigError(f"lesion.limit_batches={limit_batches} must be at least 1, or null for all")
        self.random_k, self.samples, self.seed, self.limit_batches = random_k, samples, seed, limit_batches

    def check(self, task: pl.LightningModule) -> None:
        """Refuse, before any work, a task that is no classifier or a network without residual blocks."""
        if not isinstance(task, ClassificationTask):
            raise ConfigError(
                f"lesion=blocks studies image classifiers, not a {type(task).__name__}; drop lesion=blocks"
            )
        sites = block_sites(task.net)
        if not sites:
            raise ConfigError(
                f"lesion=blocks deletes residual blocks, and {type(task.net).__name__} has none; "
                "study a ResNet or its plain twin (model=resnet20, model=plain20)"
            )
        n = sum(s.block.deletable for s in sites)
        if n == 0:
            raise ConfigError(
                "lesion=blocks: every block of this plain net changes shape, none can be deleted"
            )
        if self.random_k is not None and self.random_k > n:
            raise ConfigError(
                f"lesion.random_k={self.random_k} is more than the {n} deletable blocks of this network; "
                f"use lesion.random_k={n} or less"
            )

    def __call__(
        self, task: pl.LightningModule, datamodule: pl.LightningDataModule, output_dir: Path
    ) -> dict[str, float]:
        """Run the study on the test split, write its table and figure, return its metrics."""
        self.check(task)
        net, was_training, home = task.net, task.net.training, task.device
        # the Trainer hands the network back on the CPU after testing; study it where it was tested
        trainer = datamodule.trainer
        device = trainer.strategy.root_device if trainer is not None else home
        net.to(device).eval()
        try:
            return self._study(net, datamodule, device, Path(output_dir))
        finally:
            net.to(home).train(was_training)

    def _study(
        self, net: nn.Module, datamodule: pl.LightningDataModule, device: torch.device, output_dir: Path
    ) -> dict[str, float]:
        sites = block_sites(net)
        deletable = [s for s in sites if s.block.deletable]

        def accuracy(lesion: Sequence[Site] = ()) -> float:
            with deleted(lesion):
                return top1_accuracy(net, self._batches(datamodule, device))

        intact = accuracy()
        single = {s.name: accuracy([s]) for s in deletable}
        drops = [intact - acc for acc in single.values()]
        metrics = {"lesion/acc_intact": intact}
        metrics.update({f"lesion/acc_without_{name}": acc for name, acc in single.items()})
        metrics["lesion/mean_drop"] = sum(drops) / len(drops)
        metrics["lesion/max_drop"] = max(drops)
        random_rows = []
        if self.random_k:
            generator = torch.Generator().manual_seed(self.seed)
            for k in range(1, self.random_k + 1):
                draws = [torch.randperm(len(deletable), generator=generator)[:k] for _ in range(self.samples)]
                accs = [accuracy([deletable[i] for i in draw.tolist()]) for draw in draws]
                metrics[f"lesion/acc_random_k{k}"] = sum(accs) / len(accs)
                random_rows.append((k, sum(accs) / len(accs), min(accs), max(accs)))
        write_tables(output_dir, intact, [s.name for s in sites], single, random_rows, self.samples)
        plot(output_dir / FIGURE, intact, [s.name for s in sites], single, random_rows)
        return metrics

    def _batches(self, datamodule: pl.LightningDataModule, device: torch.device) -> Iterator[tuple]:
        """Test batches as the Trainer feeds them: on the device, through the DataModule's transfer hooks."""
        for i, batch in enumerate(datamodule.test_dataloader()):
            if self.limit_batches is not None and i >= self.limit_batches:
                return
            batch = datamodule.on_before_batch_transfer(batch, 0)
            yield datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)


@torch.inference_mode()
def top1_accuracy(net: nn.Module, batches: Iterator[tuple]) -> float:
    """Top-1 accuracy of `net` (in whatever mode it is) over (images, labels) batches."""
    metric = None
    for x, y in batches:
        logits = net(x)
        if metric is None:
            metric = MulticlassAccuracy(num_classes=logits.shape[1], average="micro").to(logits.device)
        metric.update(logits, y)
    if metric is None:
        raise ConfigError("lesion=blocks found no test batches; check the data's test split")
    return float(metric.compute())


def write_tables(
    output_dir: Path,
    intact: float,
    names: Sequence[str],
    single: dict[str, float],
    random_rows: Sequence[tuple[int, float, float, float]],
    samples: int,
) -> None:
    """`lesion.csv` (one row per block), `lesion_random.csv` (one per k) and both as `lesion.md`."""
    rows = [("none (intact)", f"{intact:.4f}", "0.0000")]
    for name in names:
        if name in single:
            rows.append((name, f"{single[name]:.4f}", f"{intact - single[name]:.4f}"))
        else:
            rows.append((name, "not deletable (changes shape, no shortcut)", ""))
    header = ("deleted", "test_acc", "drop")
    write_text(output_dir / TABLE, csv_text([header, *rows]))
    lines = ["# Lesion study: test accuracy with one block deleted", "", markdown(header, rows)]
    if random_rows:
        table = [(k, f"{mean:.4f}", f"{lo:.4f}", f"{hi:.4f}") for k, mean, lo, hi in random_rows]
        random_header = ("k", "mean_test_acc", "min", "max")
        write_text(output_dir / RANDOM_TABLE, csv_text([random_header, *table]))
        lines += [
            "",
            f"## k random blocks deleted ({samples} draws each)",
            "",
            markdown(random_header, table),
        ]
    write_text(output_dir / MARKDOWN, "\n".join(lines))


def plot(
    path: Path,
    intact: float,
    names: Sequence[str],
    single: dict[str, float],
    random_rows: Sequence[tuple[int, float, float, float]],
) -> None:
    """Accuracy per deleted block (a gap where a block cannot be deleted) and, with random_k, per k."""
    width = max(7.0, 0.2 * len(names))  # ResNet-110 has 54 blocks to label
    fig = Figure(figsize=(width + (4 if random_rows else 0), 3.8), layout="constrained")
    axes = fig.subplots(1, 2 if random_rows else 1, squeeze=False)[0]
    ax = axes[0]
    positions = range(len(names))
    ax.bar(positions, [single.get(n, 0.0) for n in names], color="tab:blue")
    for i, name in enumerate(names):
        if name not in single:
            ax.text(i, 0.02, "not deletable", rotation=90, ha="center", va="bottom", fontsize=8)
    ax.axhline(intact, color="black", linestyle="--")
    ax.set_xticks(list(positions), names, rotation=60, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.02), ylabel="test accuracy", title=f"one block deleted (dashed: intact, {intact:.3f})")
    if random_rows:
        ks, means, lows, highs = zip(*random_rows, strict=True)
        err = [
            [m - lo for m, lo in zip(means, lows, strict=True)],
            [h - m for m, h in zip(means, highs, strict=True)],
        ]
        axes[1].errorbar(ks, means, yerr=err, marker="o", capsize=3)
        axes[1].set_xticks(list(ks))
        axes[1].set(
            ylim=(0, 1.02), xlabel="blocks deleted at random", title="k random blocks deleted (min-max)"
        )
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)

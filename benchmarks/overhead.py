"""Framework overhead: a hand-written PyTorch loop vs the lightsuite task through the Trainer.

Same CIFAR ResNet-20, batch 128, random data, SGD with momentum and weight decay and a per-step
cosine schedule in both; lightsuite runs with the default callbacks (checkpointing, early
stopping, lr monitor, rich progress bar drawing to a forced terminal) and the default CSV logger.
Both are timed per step over the same steady-state steps (median interval after warmup),
alternating A/B `--repeats` times; the best run of each is kept. Prints images/s and
`ratio <shape> <lightsuite / hand>` per shape. `--threads 1` gives steadier figures on a
shared machine (2 threads vary by about 10% from run to run here).

    .venv/bin/python benchmarks/overhead.py               # both shapes
    .venv/bin/python benchmarks/overhead.py --shapes 1x8x8 --steps 300
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import RichProgressBar

from lightsuite import CONFIG_DIR
from lightsuite.data.synthetic import SyntheticImageDataModule
from lightsuite.models.resnet import resnet20
from lightsuite.tasks.schedules import cosine
from lightsuite.utils.runs import build, build_all, built_loggers

BATCH = 128
# the progress bar's console outlives a fit; it needs a sink that stays open
DEVNULL = open(os.devnull, "w")  # noqa: SIM115


def images_per_second(stamps: list[float], warmup: int) -> float:
    """Batch size over the median step-to-step interval after warmup.

    The median of one run's intervals is robust to the odd stall (another process, a GC pass)
    that on a shared 2-core machine otherwise decides a whole-run average.
    """
    intervals = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :], strict=False)]
    return BATCH / statistics.median(intervals)


class StepClock(pl.Callback):
    """The time at the end of every training step: one full cycle of the loop per interval."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


def hand_loop(shape: tuple[int, int, int], steps: int, warmup: int) -> float:
    """The baseline: tensors sliced by a shuffled index, normalized, one optimizer step each."""
    torch.manual_seed(0)
    dm = SyntheticImageDataModule(input_shape=shape, num_images=steps * BATCH, batch_size=BATCH)
    images, labels = dm.load_arrays(train=True)
    mean = images.float().div(255).mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    std = images.float().div(255).std(dim=(0, 2, 3)).view(1, -1, 1, 1)
    net = resnet20(input_shape=shape, num_classes=10)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = cosine(opt, total_steps=steps)
    net.train()
    order = torch.randperm(len(labels))
    stamps = []
    for step in range(steps):
        idx = order[step * BATCH : (step + 1) * BATCH]
        x = (images[idx].float().div_(255) - mean) / std
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        stamps.append(time.perf_counter())
    return images_per_second(stamps, warmup)


def lightsuite_loop(shape: tuple[int, int, int], steps: int, warmup: int) -> float:
    """The same work as `train(cfg)` builds it, from the default config groups."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=synthetic",
                f"data.input_shape=[{','.join(map(str, shape))}]",
                # one validation batch on top: the epoch-end checks need val/acc
                f"data.num_images={(steps + 1) * BATCH}",
                f"data.val_size={BATCH}",
                f"data.batch_size={BATCH}",
                "model=resnet20",
                "trainer.max_epochs=1",
                f"paths.output_dir={out}",
            ],
        )
        torch.manual_seed(0)
        datamodule = build(cfg.data, "data")
        task = build(cfg.task, "task", net=build(cfg.model, "model", **datamodule.net_kwargs))
        clock = StepClock()
        callbacks = [*build_all(cfg.callbacks, "callbacks"), clock]
        for cb in callbacks:
            if isinstance(cb, RichProgressBar):  # draw as in a terminal, without flooding this one
                cb._console_kwargs = {"force_terminal": True, "file": DEVNULL}
        with built_loggers(cfg.logger) as loggers:
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
            trainer.fit(task, datamodule=datamodule)
        return images_per_second(clock.stamps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["3x32x32", "1x8x8"])
    parser.add_argument(
        "--steps", type=int, default=0, help="steps per run (default: 60 at 32x32, 300 at 8x8)"
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pytorch_lightning {pl.__version__}")
    for name in args.shapes:
        shape = tuple(int(v) for v in name.split("x"))
        steps = args.steps or (60 if shape[-1] >= 32 else 300)
        hand, light = [], []
        for _ in range(args.repeats):
            hand.append(hand_loop(shape, steps, args.warmup))
            light.append(lightsuite_loop(shape, steps, args.warmup))
        best_hand, best_light = max(hand), max(light)
        rates = f"hand {best_hand:9.1f} img/s  lightsuite {best_light:9.1f} img/s"
        print(f"{name}: {rates}  ({steps} steps, best of {args.repeats})")
        print(f"  all runs: hand {[round(v) for v in hand]}  lightsuite {[round(v) for v in light]}")
        print(f"ratio {name} {best_light / best_hand:.3f}")
        assert math.isfinite(best_light / best_hand)


if __name__ == "__main__":
    main()

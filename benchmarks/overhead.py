"""Framework overhead: a hand-written PyTorch loop vs the lightsuite task through the Trainer.

Same CIFAR ResNet-20, batch 128, random data, SGD with momentum and weight decay and a per-step
cosine schedule in both. lightsuite runs as `train(cfg)` builds it, from the default config groups:
checkpointing, early stopping, lr monitor, rich progress bar (drawing to a forced terminal) and
model summary callbacks, and the CSV logger.

The two are measured side by side, step for step: after every lightsuite training step a callback
runs one step of the hand-written loop. The machine's speed drifts by 10% and more within a
minute here (2 shared cores), which decides separate back-to-back runs; interleaved, both loops
see the same machine. Each lightsuite interval is the time from the end of one hand step to the
end of the next lightsuite step (data loading, hooks, callbacks, logging included); each hand
interval is the hand step itself. Totals over the steady-state steps give images/s; prints
`ratio <shape> <lightsuite / hand>` per shape, the median over `--repeats` runs.

    .venv/bin/python benchmarks/overhead.py               # both shapes
    .venv/bin/python benchmarks/overhead.py --shapes 1x8x8 --steps 400 --threads 1
    .venv/bin/python benchmarks/overhead.py --bare     # also a bare Trainer around the same task
    .venv/bin/python benchmarks/overhead.py --compile  # the suite's compiled path (compile=true)

With `--compile` the suite's network is compiled (`compile=true`, run/compile.py) and the hand loop
stays eager: the ratio is the fast path against the loop a user would write. The first compiled step
(its compile time) falls in the warm-up; the first run's is printed apart, as `compile <shape> <seconds>`
(later runs in the process find the compile caches warm).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import RichProgressBar

from lightsuite import CONFIG_DIR
from lightsuite.data.synthetic import SyntheticImageDataModule
from lightsuite.models.resnet import resnet20
from lightsuite.run.build import build, build_all
from lightsuite.run.compile import compile_callbacks
from lightsuite.run.loggers import built_loggers
from lightsuite.tasks.schedules import cosine

BATCH = 128
# the progress bar's console outlives a fit; it needs a sink that stays open
DEVNULL = open(os.devnull, "w")  # noqa: SIM115


class HandLoop:
    """The baseline: tensors sliced by a shuffled index, normalized, one optimizer step per call."""

    def __init__(
        self, shape: tuple[int, int, int], steps: int, batch: int = BATCH, device: str = "cpu"
    ) -> None:
        torch.manual_seed(1)
        images, labels = SyntheticImageDataModule(input_shape=shape, num_images=steps * batch).load_arrays(
            True
        )
        scaled = images.float().div(255)
        self.mean = scaled.mean(dim=(0, 2, 3)).view(1, -1, 1, 1).to(device)
        self.std = scaled.std(dim=(0, 2, 3)).view(1, -1, 1, 1).to(device)
        # on the device once, as the suite's resident sets are
        self.images, self.labels, self.batch = images.to(device), labels.to(device), batch
        self.net = resnet20(input_shape=shape, num_classes=10).train().to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.sched = cosine(self.opt, total_steps=steps)
        self.order = torch.randperm(len(labels)).to(device)
        self.done = 0

    def step(self) -> None:
        idx = self.order[self.done * self.batch : (self.done + 1) * self.batch]
        x = (self.images[idx].float().div_(255) - self.mean) / self.std
        loss = F.cross_entropy(self.net(x), self.labels[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.done += 1


class Interleave(pl.Callback):
    """After each lightsuite step, time one hand step; the rest of the cycle is lightsuite's."""

    def __init__(self, hand: HandLoop, warmup: int, device: str = "cpu") -> None:
        self.hand, self.warmup = hand, warmup
        self.hand_time = self.light_time = 0.0
        self.steps = 0
        self.sync = device_sync(device)
        self._hand_end: float | None = None
        self._first_start: float | None = None
        self.first_step = 0.0  # the first lightsuite step: a compiled run's compile time

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._first_start is None:
            self._first_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.sync()
        start = time.perf_counter()
        if self._hand_end is None:
            self.first_step = start - self._first_start
        measured = trainer.global_step > self.warmup and self._hand_end is not None
        if measured:  # the lightsuite step that just ended, from the end of the last hand step
            self.light_time += start - self._hand_end
        self.hand.step()
        self.sync()
        self._hand_end = time.perf_counter()
        if measured:
            self.hand_time += self._hand_end - start
            self.steps += 1


def device_sync(device: str) -> Callable[[], None]:
    """What makes a clock read after a step mean the step is done: a CUDA sync, nothing on the CPU."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None


def device_overrides(device: str) -> list[str]:
    """The trainer on `device` (`cuda`: `trainer=gpu`, fp32 unless the caller adds its precision)."""
    if torch.device(device).type == "cuda":
        return ["trainer=gpu", "trainer.precision=32-true"]
    return ["trainer.accelerator=cpu"]


# a bare Trainer around the same task: no callbacks, loggers, progress bar or summary
BARE = [
    "callbacks=none",
    "logger=none",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "+trainer.enable_checkpointing=false",
]


def run_pair(
    shape: tuple[int, int, int],
    steps: int,
    warmup: int,
    bare: bool = False,
    compiled: bool | str = False,
    batch: int = BATCH,
    device: str = "cpu",
    overrides: Sequence[str] = (),
) -> tuple[float, float, float]:
    """Images/s of (hand loop, lightsuite) over the same interleaved steps; lightsuite's first step (s).

    `compiled`: the `compile` setting (True, False or "auto"); `overrides` go last (a precision, say).
    """
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=synthetic",
                f"data.input_shape=[{','.join(map(str, shape))}]",
                # one validation batch on top: the epoch-end checks need val/acc
                f"data.num_images={(steps + 1) * batch}",
                f"data.val_size={batch}",
                f"data.batch_size={batch}",
                "model=resnet20",
                "trainer.max_epochs=1",
                f"paths.output_dir={out}",
                *(BARE if bare else []),
                f"compile={str(compiled).lower()}",
                *device_overrides(device),
                *overrides,
            ],
        )
        torch.manual_seed(0)
        datamodule = build(cfg.data, "data")
        task = build(cfg.task, "task", net=build(cfg.model, "model", **datamodule.net_kwargs))
        clock = Interleave(HandLoop(shape, steps, batch, device), warmup, device)
        callbacks = [*build_all(cfg.callbacks, "callbacks"), *compile_callbacks(cfg), clock]
        for cb in callbacks:
            if isinstance(cb, RichProgressBar):  # draw as in a terminal, without flooding this one
                cb._console_kwargs = {"force_terminal": True, "file": DEVNULL}
        with built_loggers(cfg.logger) as loggers:
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
            trainer.fit(task, datamodule=datamodule)
    return clock.steps * batch / clock.hand_time, clock.steps * batch / clock.light_time, clock.first_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["3x32x32", "1x8x8"])
    parser.add_argument("--steps", type=int, default=0, help="steps per run (default: 40 at 32 px, 300 at 8)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--bare", action="store_true", help="also time a bare Trainer (no callbacks/loggers)")
    parser.add_argument("--compile", action="store_true", help="compile the suite's network (compile=true)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pytorch_lightning {pl.__version__}")
    for name in args.shapes:
        shape = tuple(int(v) for v in name.split("x"))
        steps = args.steps or (40 if shape[-1] >= 32 else 300)
        runs = [run_pair(shape, steps, args.warmup, compiled=args.compile) for _ in range(args.repeats)]
        ratios = [light / hand for hand, light, _ in runs]
        for hand, light, first in runs:
            print(
                f"{name}: hand {hand:8.1f} img/s  lightsuite {light:8.1f} img/s  ratio {light / hand:.3f}"
                f"  first step {first:.1f} s"
            )
        case = f"{name}-compiled" if args.compile else name
        print(f"ratio {case} {statistics.median(ratios):.3f}")
        if args.compile:
            # the process's first compile of this shape; later runs find dynamo's and inductor's caches warm
            print(f"compile {name} {runs[0][2]:.1f}")
        if args.bare:
            bare = [
                light / hand for hand, light, _ in (run_pair(shape, steps, args.warmup, True) for _ in ratios)
            ]
            print(f"ratio-bare-trainer {name} {statistics.median(bare):.3f}")


if __name__ == "__main__":
    main()

"""Framework overhead of the sequence tasks: a hand-written PyTorch loop vs lightsuite through the Trainer.

Two cases, each the suite's own experiment config with its DataModule, network and task:
- `sunspots`: `experiment=sunspots_lstm` (LSTM, hidden 64, lookback 24, batch 64, AdamW); the
  training windows are repeated so that one epoch holds `--steps` optimizer steps.
- `adding`: `experiment=adding_lstm` (LSTM, hidden 128, T = 100, batch 64, AdamW, clipping at 1).

The hand loop takes exactly the same batches (it reads lightsuite's own training batches as they
arrive) through its own copy of the network and optimizer: forward, loss, backward, clip, step.
The two are interleaved step for step, as in `benchmarks/overhead.py`: after every lightsuite
training step a callback runs the hand loop on the batches that step used, so both see the same
machine at the same moment. Each lightsuite interval runs from the end of one hand block to the
end of the next lightsuite step (data loading, hooks, callbacks, logging included).

With `data.batches_per_step=k` a lightsuite step takes k optimizer steps (manual optimization):
the same batches, order and updates, with Lightning's per-step cost paid once per k. Prints
`ratio <case>-k<k> <lightsuite / hand>` (samples per second), the median over `--repeats` runs.

    .venv/bin/python benchmarks/rnn_overhead.py --threads 1
    .venv/bin/python benchmarks/rnn_overhead.py --cases sunspots --group 1 4 --steps 300
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from overhead import device_overrides, device_sync
from pytorch_lightning.callbacks import RichProgressBar

from lightsuite import CONFIG_DIR
from lightsuite.run.build import build, build_all
from lightsuite.run.compile import compile_callbacks
from lightsuite.run.loggers import built_loggers

DEVNULL = open(os.devnull, "w")  # noqa: SIM115
CASES = {
    "sunspots": ["experiment=sunspots_lstm", "task.baselines=[]", "task.plot=false"],
    "adding": ["experiment=adding_lstm", "data.num_val=64", "data.num_test=64"],
}


class HandLoop:
    """A copy of the task's network and optimizer, stepped on the batches lightsuite used."""

    def __init__(self, task: pl.LightningModule, target: str, device: str = "cpu") -> None:
        self.net = copy.deepcopy(task.net).train().to(device)
        self.opt = task.optimizer_factory(self.net.parameters())
        self.clip = task.gradient_clip_val
        self.target = target

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        loss = F.mse_loss(self.net(batch["x"])[0], batch[self.target])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()


class Interleave(pl.Callback):
    """After each lightsuite step, time the hand loop on its batches; the rest is lightsuite's."""

    def __init__(self, hand: HandLoop, warmup: int, device: str = "cpu") -> None:
        self.hand, self.warmup = hand, warmup
        self.hand_time = self.light_time = 0.0
        self.samples = 0
        self.sync = device_sync(device)
        self._hand_end: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.sync()
        start = time.perf_counter()
        measured = batch_idx >= self.warmup and self._hand_end is not None
        if measured:
            self.light_time += start - self._hand_end
        for part in batch:
            self.hand.step(part)
        self.sync()
        self._hand_end = time.perf_counter()
        if measured:
            self.hand_time += self._hand_end - start
            self.samples += sum(len(part["x"]) for part in batch)


def run_pair(
    case: str,
    group: int,
    steps: int,
    warmup: int,
    compiled: bool | str = False,
    model: str | None = None,
    batch: int = 64,
    device: str = "cpu",
    extra: Sequence[str] = (),
) -> tuple[float, float]:
    """Samples/s of (hand loop, lightsuite) over the same interleaved steps (`extra` overrides go last)."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *CASES[case],
                *([f"model={model}"] if model else []),
                f"data.batches_per_step={group}",
                "trainer.max_epochs=1",
                "trainer.limit_val_batches=1",
                "+trainer.num_sanity_val_steps=0",
                f"paths.output_dir={out}",
                f"compile={str(compiled).lower()}",
                f"data.batch_size={batch}",
                *([f"data.num_train={steps * batch}"] if case == "adding" else []),
                *device_overrides(device),
                *extra,
            ],
        )
        torch.manual_seed(0)
        datamodule = build(cfg.data, "data")
        task = build(cfg.task, "task", net=build(cfg.model, "model", **datamodule.net_kwargs))
        if case == "sunspots":  # repeat the training windows: one epoch of `steps` optimizer steps
            datamodule.setup()
            train = datamodule.windows["train"]
            reps = -(-steps * batch // len(train["x"]))
            datamodule.windows["train"] = {k: v.repeat(reps, *[1] * (v.dim() - 1)) for k, v in train.items()}
        clock = Interleave(HandLoop(task, "y", device), warmup, device)
        callbacks = [*build_all(cfg.callbacks, "callbacks"), *compile_callbacks(cfg), clock]
        for cb in callbacks:
            if isinstance(cb, RichProgressBar):
                cb._console_kwargs = {"force_terminal": True, "file": DEVNULL}
        with built_loggers(cfg.logger) as loggers:
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
            trainer.fit(task, datamodule=datamodule)
    return clock.samples / clock.hand_time, clock.samples / clock.light_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--group", nargs="+", type=int, default=[1, 8], help="data.batches_per_step values")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (400 sunspots, 60 adding)")
    parser.add_argument("--warmup", type=int, default=2, help="lightsuite steps left out at the start")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="compile the network (compile=true)")
    parser.add_argument("--model", default=None, help="a model group file instead of the experiment's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pytorch_lightning {pl.__version__}")
    for case in args.cases:
        steps = args.steps or {"sunspots": 400, "adding": 60}[case]
        for group in args.group:
            runs = [
                run_pair(case, group, steps, args.warmup, args.compile, args.model)
                for _ in range(args.repeats)
            ]
            ratios = [light / hand for hand, light in runs]
            for hand, light in runs:
                rates = f"hand {hand:9.1f}/s  lightsuite {light:9.1f}/s"
                print(f"{case} k={group}: {rates}  ratio {light / hand:.3f}")
            model = f"-{args.model}" if args.model else ""
            name = f"{case}{model}-k{group}{'-compiled' if args.compile else ''}"
            print(f"ratio {name} {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

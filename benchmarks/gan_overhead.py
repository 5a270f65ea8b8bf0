"""Framework overhead of task=gan: a hand-written PyTorch GAN loop vs the lightsuite task in the Trainer.

Two cases: the 2-D MLP GAN of `experiment=gaussians_gan` (3x128 MLPs, batch 256, PacGAN m=2, Adam
lr 1e-3, 8 D/G rounds per Lightning step) and a 32x32 DCGAN on random images (batch 64, one round
per step). lightsuite runs as `train(cfg)` builds it: default callbacks (checkpointing, early
stopping, lr monitor, rich progress bar drawing to a forced terminal, model summary) and the CSV
logger. The hand loop does the same steps with the same networks, optimizers and losses: per
round, one D step on a real slice and fresh noise, one G step, no Lightning.

As in benchmarks/overhead.py the two are interleaved step for step (2 shared cores drift by 10% and
more within a minute): after every lightsuite training step a callback runs the hand loop for the
same number of rounds. A lightsuite interval runs from the end of one hand batch to the end of the
next lightsuite step; a hand interval is the hand batch itself. Prints `ratio <case> <lightsuite
rounds/s / hand rounds/s>`, the median over `--repeats` runs.

    .venv/bin/python benchmarks/gan_overhead.py --threads 1
    .venv/bin/python benchmarks/gan_overhead.py --cases mlp_gaussians --rounds-per-step 1   # no amortization
"""

from __future__ import annotations

import argparse
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
    # name: (overrides, batch per round, Lightning steps)
    "mlp_gaussians": (["experiment=gaussians_gan", "data.num_train=131072"], 256, 48),
    "dcgan_32": (
        [
            "task=gan",
            "model=dcgan",
            "model.width=32",
            "data=synthetic",
            "data.input_shape=[3,32,32]",
            "data.pixels=symmetric",
            "data.augment=false",
            "data.batch_size=64",
            "task.fid=false",
            "callbacks.model_checkpoint.monitor=train/d_loss",
            "callbacks.model_checkpoint.mode=min",
            "callbacks.early_stopping.monitor=train/d_loss",
            "callbacks.early_stopping.mode=min",
        ],
        64,
        40,
    ),
}


class HandLoop:
    """The baseline: the same networks and Adam settings, rounds of (D step, G step) on slices of a batch."""

    def __init__(self, net: torch.nn.Module, task: pl.LightningModule) -> None:
        self.net = net
        self.G, self.D = net.generator.train(), net.discriminator.train()
        self.g_opt = task.g_optimizer_factory(self.G.parameters())
        self.d_opt = task.d_optimizer_factory(self.D.parameters())
        self.pack, self.rounds = task.pack, task.rounds_per_step

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0] // self.pack, self.pack * x.shape[1], *x.shape[2:])

    def batch(self, real: torch.Tensor) -> None:
        size = len(real) // self.rounds // self.pack * self.pack
        for chunk in real[: size * self.rounds].split(size):
            with torch.no_grad():
                fake = self.G(torch.randn(size, self.net.latent_dim, device=real.device))
            d_loss = (
                F.softplus(-self.D(self.packed(chunk))).mean() + F.softplus(self.D(self.packed(fake))).mean()
            )
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            fake = self.G(torch.randn(size, self.net.latent_dim, device=real.device))
            g_loss = F.softplus(-self.D(self.packed(fake))).mean()
            self.g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_opt.step()


class Interleave(pl.Callback):
    """After each lightsuite step, time the hand loop on the same batch; the rest is lightsuite's."""

    def __init__(self, hand: HandLoop, warmup: int, device: str = "cpu") -> None:
        self.hand, self.warmup = hand, warmup
        self.hand_time = self.light_time = 0.0
        self.batches = 0
        self.sync = device_sync(device)
        self._hand_end: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        real = (
            trainer.datamodule.on_after_batch_transfer(batch, 0)[0]
            if batch[0].dtype == torch.uint8
            else batch[0]
        )
        self.sync()
        start = time.perf_counter()
        measured = batch_idx >= self.warmup and self._hand_end is not None
        if measured:
            self.light_time += start - self._hand_end
        self.hand.batch(real)
        self.sync()
        self._hand_end = time.perf_counter()
        if measured:
            self.hand_time += self._hand_end - start
            self.batches += 1


def run_pair(
    case: str,
    warmup: int,
    rounds_per_step: int | None,
    compiled: bool | str = False,
    batch: int | None = None,
    steps: int | None = None,
    device: str = "cpu",
    extra: Sequence[str] = (),
) -> tuple[float, float]:
    """Rounds/s of (hand loop, lightsuite) over the same interleaved steps.

    `batch` (per round) and `steps` (Lightning steps) replace the case's; `extra` overrides go last.
    """
    overrides, case_batch, case_steps = CASES[case]
    batch, steps = batch or case_batch, steps or case_steps
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        settings = [f"paths.output_dir={out}", "trainer.max_epochs=1", f"compile={str(compiled).lower()}"]
        cfg = compose("train", overrides=[*overrides, *settings, *device_overrides(device), *extra])
        rounds = rounds_per_step or cfg.task.rounds_per_step
        cfg.task.rounds_per_step = rounds
        cfg.task.num_eval_samples = 64
        cfg.task.sample_every_n_epochs = 0
        cfg.data.batch_size = batch * rounds
        cfg.trainer.limit_train_batches = steps
        cfg.trainer.limit_val_batches = 1
        torch.manual_seed(0)
        datamodule = build(cfg.data, "data")
        net = build(cfg.model, "model", **datamodule.net_kwargs)
        task = build(cfg.task, "task", net=net)
        torch.manual_seed(0)
        hand_net = build(cfg.model, "model", **datamodule.net_kwargs).to(device)
        clock = Interleave(HandLoop(hand_net, task), warmup, device)
        callbacks = [*build_all(cfg.callbacks, "callbacks"), *compile_callbacks(cfg), clock]
        for cb in callbacks:
            if isinstance(cb, RichProgressBar):
                cb._console_kwargs = {"force_terminal": True, "file": DEVNULL}
        with built_loggers(cfg.logger) as loggers:
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
            trainer.fit(task, datamodule=datamodule)
    done = clock.batches * rounds
    return done / clock.hand_time, done / clock.light_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds-per-step", type=int, default=None, help="override the case's rounds per step"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--compile", action="store_true", help="compile G and D (compile=true); the hand loop stays eager"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pytorch_lightning {pl.__version__}")
    for case in args.cases:
        runs = [run_pair(case, args.warmup, args.rounds_per_step, args.compile) for _ in range(args.repeats)]
        for hand, light in runs:
            print(
                f"{case}: hand {hand:8.1f} rounds/s  lightsuite {light:8.1f} rounds/s  "
                f"ratio {light / hand:.3f}"
            )
        name = f"{case}-compiled" if args.compile else case
        print(f"ratio {name} {statistics.median(light / hand for hand, light in runs):.3f}")


if __name__ == "__main__":
    main()

"""Samples/s of each family three ways: an eager hand loop, the suite eager, the suite's fast path.

Built for a GPU (`scripts/gpu-smoke.sh` runs it there); runs on any device. Per family, two
interleaved pairs from the overhead benchmarks, the same hand loops and configs:

- `resnet20`: CIFAR-shaped synthetic images (3x32x32), `benchmarks/overhead.py`; images/s.
- `dcgan`: the 32x32 DCGAN on synthetic images, one D/G round per step, `benchmarks/gan_overhead.py`;
  real images/s (rounds/s x batch).
- `lstm`: the sunspots LSTM (hidden 64, lookback 24), a group of batches per Lightning step,
  `benchmarks/rnn_overhead.py`; windows/s.

Variants: `hand` is the hand loop, eager fp32 (its samples/s from the eager pair); `suite_eager` is the
suite with `compile=false` in fp32 (on CUDA its optimizer is fused and a convolutional net runs
channels_last, as every CUDA run of the suite); `suite_fast` is the suite with `--compile` (default
true) and, on CUDA, `trainer=gpu`'s bf16 autocast. On CUDA each interval ends with a device sync, so
that a clock read means the step is done. Prints `throughput <family> <variant> <samples/s>` and
`ratio <family>-<variant> <x>` (each suite variant over the hand loop in its own interleaved pair).

    python benchmarks/gpu_throughput.py --device cuda                # batch 512, 50 steps
    python benchmarks/gpu_throughput.py --device cpu --batch 16 --steps 3 --warmup 1 --compile auto
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks, when imported

import gan_overhead
import overhead
import rnn_overhead
import torch

FAMILIES = ("resnet20", "dcgan", "lstm")
# on CUDA the fast path is trainer=gpu's bf16 autocast; on the CPU the eager pair's fp32
FAST_PRECISION = {"cuda": ["trainer.precision=bf16-mixed"], "cpu": []}
PairFn = Callable[[str, Sequence[str]], tuple[float, float]]


def pairs(args: argparse.Namespace) -> dict[str, PairFn]:
    """Per family: (compile setting, extra overrides) -> samples/s of (hand loop, suite)."""
    batch, steps, warmup, device = args.batch, args.steps, args.warmup, args.device
    # the LSTM's group: a few Lightning steps past the warm-up even for a handful of optimizer steps
    group = max(1, min(8, steps // (warmup + 2)))

    def resnet(compiled: str, extra: Sequence[str]) -> tuple[float, float]:
        hand, light, _ = overhead.run_pair(
            (3, 32, 32), steps, warmup, compiled=compiled, batch=batch, device=device, overrides=extra
        )
        return hand, light

    def dcgan(compiled: str, extra: Sequence[str]) -> tuple[float, float]:
        # enough synthetic images for `steps` batches after the 10% validation split
        images = f"data.num_images={(steps + 1) * batch * 10 // 9 + batch}"
        hand, light = gan_overhead.run_pair(
            "dcgan_32", warmup, 1, compiled, batch=batch, steps=steps, device=device, extra=[images, *extra]
        )
        return hand * batch, light * batch  # one round per step: a batch of real images each

    def lstm(compiled: str, extra: Sequence[str]) -> tuple[float, float]:
        return rnn_overhead.run_pair(
            "sunspots", group, steps, warmup, compiled, batch=batch, device=device, extra=extra
        )

    return {"resnet20": resnet, "dcgan": dcgan, "lstm": lstm}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the families asked for; returns {family: {variant: samples/s, "<variant>_ratio": x}}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--batch", type=int, default=512, help="samples per optimizer step")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="Lightning steps left out at the start")
    parser.add_argument(
        "--compile", default="true", choices=["true", "false", "auto"], help="the fast path's compile"
    )
    args = parser.parse_args(argv)
    kind = torch.device(args.device).type
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu)")
    name = torch.cuda.get_device_name(args.device) if kind == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, batch {args.batch}, {args.steps} steps")
    results: dict[str, dict[str, float]] = {}
    for family, pair in pairs(args).items():
        if family not in args.families:
            continue
        hand, eager = pair("false", [])
        hand_fast, fast = pair(args.compile, FAST_PRECISION.get(kind, []))
        row = {"hand": hand, "suite_eager": eager, "suite_fast": fast}
        for variant, rate in row.items():
            print(f"throughput {family} {variant} {rate:.1f}", flush=True)
        ratios = {"suite_eager": eager / hand, "suite_fast": fast / hand_fast}
        for variant, ratio in ratios.items():
            print(f"ratio {family}-{variant} {ratio:.3f}", flush=True)
        results[family] = {**row, **{f"{variant}_ratio": ratio for variant, ratio in ratios.items()}}
    return results


if __name__ == "__main__":
    main()

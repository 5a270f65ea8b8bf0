"""Start-up: how long `lightsuite-train`, `-eval` and `-sample` take to answer, against `import torch`.

A user waits for a config error, for `--help`, and for the default run's first training step. Each is
a fresh process timed from its start (wall clock, warm file cache), in rounds that interleave every
case with the torch import, so that the 2 shared cores' drift hits them alike. The default run's
start-up is the run's own figure (its closing "start-up X s, training Y s, test Z s" line: from the
process's start to its first training batch), from a one-epoch run of two batches.

`lightsuite-eval` and `lightsuite-sample` are timed to `--help` and to a one-line error (a checkpoint
that does not exist; for sample also a wrong value), which they give before torch loads.

Prints `seconds <case> <median>` and `ratio <case> <median seconds / import torch>` per case.

    .venv/bin/python benchmarks/startup.py               # 5 rounds
    .venv/bin/python benchmarks/startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
STARTUP = re.compile(r"start-up ([\d.]+) s, training")


def _cases(run_root: Path) -> dict[str, list[str]]:
    train = str(BIN / "lightsuite-train")
    evaluate, sample = str(BIN / "lightsuite-eval"), str(BIN / "lightsuite-sample")
    missing = f"ckpt_path={run_root}/missing.ckpt"
    return {
        "import-torch": [sys.executable, "-c", "import torch"],
        "help": [train, "--help"],
        "config-error": [train, "task.optimizer.lr=abc"],
        "composition-error": [train, "model=resnet21"],
        "eval-help": [evaluate, "--help"],
        "eval-missing-checkpoint": [evaluate, missing, f"hydra.run.dir={run_root}/eval"],
        "sample-help": [sample, "--help"],
        "sample-missing-checkpoint": [sample, missing],
        "sample-config-error": [sample, missing, "num_samples=abc"],
        "first-step": [
            train,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            f"hydra.run.dir={run_root}/run",  # a new dir per call (see `_time`)
        ],
    }


def _time(command: list[str], env: dict[str, str]) -> float:
    """Seconds to the answer: the whole process, or for a run its own start-up figure."""
    if "trainer.max_epochs=1" in command:  # a fresh run dir: a finished one would only be read back
        command = [*command[:-1], f"{command[-1]}{time.monotonic_ns()}"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    if "trainer.max_epochs=1" in command:
        found = STARTUP.search(proc.stdout + proc.stderr)
        if proc.returncode != 0 or found is None:
            raise SystemExit(f"the run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return float(found.group(1))
    if "--help" in command or command[0] == sys.executable:
        if proc.returncode != 0:
            raise SystemExit(f"{command} failed: {proc.stderr[-2000:]}")
    elif proc.returncode != 1:
        raise SystemExit(f"{command} should exit 1, exited {proc.returncode}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "TERM": "dumb"}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds + 1):  # the first round warms the file cache and is dropped
            for name, command in cases.items():
                times[name].append(_time(command, env))
    medians = {name: statistics.median(values[1:]) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"seconds {name} {seconds:.2f}")
    for name, seconds in medians.items():
        if name != "import-torch":
            print(f"ratio {name} {seconds / medians['import-torch']:.2f}")


if __name__ == "__main__":
    main()

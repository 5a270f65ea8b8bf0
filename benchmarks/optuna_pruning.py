"""What pruning saves: a 12-trial digits search with the median pruner against the same search without.

Both searches are the real command (`lightsuite-train hparams_search=digits_resnet`), same seeds,
same search space widened down to learning rates that cannot learn in a few epochs (1e-5), each in
its own sweep dir with its own journal. They run alternately (`--repeats` pairs, pruned first in
odd pairs, unpruned first in even ones) so both see the same machine. Prints, per pair and as the
median over pairs:

    ratio wall_pruned_over_unpruned <pruned search's wall time / the unpruned one's>
    ratio trials_pruned <trials the median pruner stopped early, of 12>
    ratio journal_kib <size of the pruned search's optuna.journal in KiB>
    ratio best_pruned_minus_unpruned <best val/acc_best with pruning - without>

    .venv/bin/python benchmarks/optuna_pruning.py                  # one pair, 6 epochs per trial
    .venv/bin/python benchmarks/optuna_pruning.py --repeats 3 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def search(sweep: Path, pruner: str, trials: int, epochs: int) -> tuple[float, dict]:
    cmd = [
        sys.executable, "-m", "lightsuite.train", "hparams_search=digits_resnet",
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.pruner={pruner}",
        "task.optimizer.lr=tag(log, interval(1e-5, 0.5))", "seed=42",
        f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=8", "callbacks.early_stopping=null",
        "callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=sweep.parent)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the {pruner} search failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads((sweep / "sweep_summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.repeats):
            order = ("median", "none") if pair % 2 == 0 else ("none", "median")
            results = {}
            for pruner in order:
                sweep = Path(tmp) / f"{pruner}_{pair}"
                results[pruner] = (*search(sweep, pruner, args.trials, args.epochs), sweep)
            (wall_p, summary_p, sweep_p), (wall_u, summary_u, _) = results["median"], results["none"]
            pair_rows = {
                "wall_pruned_over_unpruned": wall_p / wall_u,
                "trials_pruned": float(summary_p["pruned"]),
                "journal_kib": (sweep_p / "optuna.journal").stat().st_size / 1024,
                "best_pruned_minus_unpruned": summary_p["best"]["objective"] - summary_u["best"]["objective"],
            }
            print(f"# pair {pair}: pruned {wall_p:.1f} s, unpruned {wall_u:.1f} s", flush=True)
            for case, value in pair_rows.items():
                rows.setdefault(case, []).append(value)
                print(f"#   {case} {value:.4g}", flush=True)
    for case, values in rows.items():
        print(f"ratio {case} {statistics.median(values):.4g}")


if __name__ == "__main__":
    main()

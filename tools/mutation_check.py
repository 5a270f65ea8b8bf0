"""Break the code on purpose, one edit at a time, and check that a test notices each break.

A table (YAML) lists small source edits ("mutants"), each with the tests that should catch it
(pytest arguments: files, node ids, `-k` expressions):

    - file: src/lightsuite/run/files.py
      old: "clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}"
      new: "clean = dict(metrics)"
      tests: [tests/run/test_files.py]
      why: non-finite values written as bare NaN

For each entry the tool replaces `old` (which must occur exactly once in `file`) with `new`, runs
`pytest -x -q` on its tests, and restores the file, content and modification time, whatever
happens. A mutant is caught when pytest fails. The tests are run once unbroken first: a test that
fails anyway would "catch" everything. Not part of `make test`: it runs the named tests once per
entry, which takes minutes.

    .venv/bin/python tools/mutation_check.py tools/mutations/bookkeeping.yaml
    .venv/bin/python tools/mutation_check.py tools/mutations/*.yaml --only cosine
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Mutant:
    file: str
    old: str
    new: str
    tests: list[str]
    why: str = ""
    source: str = field(default="", repr=False)  # which table it came from


def load(tables: list[Path]) -> list[Mutant]:
    mutants = []
    for table in tables:
        for entry in yaml.safe_load(table.read_text()) or []:
            mutants.append(Mutant(**entry, source=table.name))
    return mutants


def run_tests(tests: list[str], timeout: float) -> tuple[int, str]:
    """pytest's exit status (124 on timeout) and the last line it printed."""
    # no bytecode is written, so no mutant's .pyc can outlive the mutant
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, lines[-1] if lines else ""


def check(mutant: Mutant, timeout: float) -> tuple[str, str]:
    """('caught' | 'missed' | 'stale', detail) for one mutant; the file is restored before returning."""
    path = ROOT / mutant.file
    original = path.read_bytes()
    text = original.decode()
    if text.count(mutant.old) != 1:
        return "stale", f"`old` occurs {text.count(mutant.old)} times in {mutant.file} (must be once)"
    stat = path.stat()
    try:
        path.write_text(text.replace(mutant.old, mutant.new))
        # a different mtime, so that an existing .pyc of the original is not taken for the mutant
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        status, last = run_tests(mutant.tests, timeout)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if status == 0:
        return "missed", last
    # 1: a test failed; anything else (a collection error, a timeout) still means "noticed", but say so
    return "caught", last if status == 1 else f"exit {status}: {last}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="YAML files of mutants")
    parser.add_argument("--only", default="", help="only mutants whose file, old, new or why has this")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per pytest run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbroken run (done by hand)")
    args = parser.parse_args()

    mutants = [m for m in load(args.tables) if args.only in f"{m.file} {m.old} {m.new} {m.why}"]
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    status, last = (0, "") if args.no_baseline else run_tests(tests, args.timeout)
    if status != 0:
        print(f"the tests fail without any mutant ({last}); fix them first", file=sys.stderr)
        return 2
    counts = {"caught": 0, "missed": 0, "stale": 0}
    for m in mutants:
        start = time.perf_counter()
        verdict, detail = check(m, args.timeout)
        counts[verdict] += 1
        label = m.why or f"{m.old!r} -> {m.new!r}"
        print(f"{verdict:6s} {time.perf_counter() - start:5.1f}s  {m.file}: {label}  [{detail}]", flush=True)
    print(f"caught {counts['caught']} of {len(mutants)}; missed {counts['missed']}; stale {counts['stale']}")
    return 1 if counts["missed"] or counts["stale"] else 0


if __name__ == "__main__":
    sys.exit(main())

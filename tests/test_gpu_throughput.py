"""benchmarks/gpu_throughput.py (what scripts/gpu-smoke.sh runs on a GPU) on the CPU at the smallest sizes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_throughput

LINE = re.compile(r"^(throughput (\S+) (\S+)|ratio (\S+)-(\S+)) (\d+\.\d+)$")


def test_each_family_gets_a_throughput_line_per_variant_and_two_ratios(capsys):
    GlobalHydra.instance().clear()
    results = gpu_throughput.main(
        ["--device", "cpu", "--batch", "8", "--steps", "2", "--warmup", "0", "--compile", "auto"]
    )
    out = capsys.readouterr().out
    rates, ratios = {}, {}
    for line in out.splitlines():
        match = LINE.match(line)
        if match and match[2]:
            rates[match[2], match[3]] = float(match[6])
        elif match:
            ratios[match[4], match[5]] = float(match[6])
    families, variants = gpu_throughput.FAMILIES, ("hand", "suite_eager", "suite_fast")
    assert set(rates) == {(f, v) for f in families for v in variants}
    assert set(ratios) == {(f, v) for f in families for v in variants[1:]}
    assert all(rate > 0 for rate in [*rates.values(), *ratios.values()])
    # the printed figures are the returned ones, and the eager ratio is the eager pair's
    for family in families:
        assert rates[family, "suite_eager"] == round(results[family]["suite_eager"], 1)
        eager = results[family]["suite_eager"] / results[family]["hand"]
        assert ratios[family, "suite_eager"] == round(eager, 3)

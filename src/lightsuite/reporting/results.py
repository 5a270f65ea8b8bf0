"""`make results` (`lightsuite-report --claims`): each claim's sweep run or continued, then
`docs/results.md` written from the run dirs (claims.py says what each claim is and how to read it).

The sweeps write into `outputs/claims/<sweep>/<overrides>/` under the directory it runs from: a
finished job returns its `metrics.json` without training, a killed one continues from its
checkpoint, so running it again only does what is missing.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lightsuite.errors import ConfigError
from lightsuite.reporting.claims import CLAIMS, Claim
from lightsuite.reporting.runs import DONE, Job, find_jobs
from lightsuite.reporting.tables import Setting, markdown, mean_std, settings


def chosen(names: str | None) -> list[Claim]:
    """The claims `--claims=a,b` names (all when empty), or one line listing the known ones."""
    if not names or names == "all":
        return list(CLAIMS.values())
    picked = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in CLAIMS:
            raise ConfigError(f"--claims: no claim {name!r}; choose from {', '.join(CLAIMS)} (or all)")
        picked.append(CLAIMS[name])
    return picked


def run_claim(claim: Claim, root: Path, extra: Sequence[str] = ()) -> int:
    """Run (or continue) a claim's sweep under `root`/outputs/claims; its exit status."""
    env = {**os.environ, "LIGHTSUITE_ROOT": str(root)}
    cmd = [sys.executable, "-m", "lightsuite.train", f"experiment=claims/{claim.name}", *extra]
    print(f"claim {claim.name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env, cwd=root, check=False).returncode


def claim_jobs(claim: Claim, root: Path) -> list[Job]:
    """This claim's jobs in its sweep dir: those whose swept values are the claim's."""
    sweep = root / "outputs" / "claims" / claim.sweep
    if not sweep.is_dir():
        return []
    jobs = [j for j in find_jobs([sweep]) if j.name != "report" and not j.name.startswith(".")]
    return [j for j in jobs if all(j.value(k) in values for k, values in claim.params.items())]


def summarize(claim: Claim, jobs: Sequence[Job]) -> tuple[list[Setting], dict[str, dict[str, float]]]:
    """The claim's settings and, per setting label, each column's mean over its finished seeds."""
    groups = settings(jobs, claim.keys) if jobs else []
    table: dict[str, dict[str, float]] = {}
    for group in groups:
        row = {}
        for column in claim.columns:
            values = [v for v in (column.read(j) for j in group.jobs if j.status == DONE) if v is not None]
            if values:
                row[column.header] = statistics.fmean(values)
        if row:
            table[group.label] = row
    return groups, table


def _cells(claim: Claim, groups: list[Setting]) -> tuple[list[str], list[list[str]]]:
    header = [*claim.keys, "seeds", *(c.header for c in claim.columns)]
    if claim.published:
        header.append("published")
    rows = []
    for group in groups:
        done = [j for j in group.jobs if j.status == DONE]
        cells = [mean_std([v for v in (c.read(j) for j in done) if v is not None]) for c in claim.columns]
        row = [*group.values.values(), f"{len(done)}/{len(group.jobs)}", *cells]
        if claim.published:
            row.append(claim.published.get(group.label, ""))
        rows.append(row)
    return header, rows


def _spent(jobs: Sequence[Job]) -> tuple[float, float, str]:
    """(wall seconds from the first start to the last end, summed job seconds, the machine) of the jobs."""
    starts, ends, total, machine = [], [], 0.0, ""
    for job in jobs:
        prov = job.run.get("provenance") if isinstance(job.run.get("provenance"), dict) else {}
        for segment in prov.get("segments") or [prov]:
            start, end = _time(segment.get("start")), _time(segment.get("end"))
            if start is not None and end is not None:
                starts.append(start)
                ends.append(end)
                total += end - start
        if not machine and prov:
            devices = prov.get("devices") or {}
            cpus = devices.get("cpu_count") if isinstance(devices, dict) else None
            machine = f"{prov.get('host', '?')}, {cpus or '?'} CPUs"
    wall = max(ends) - min(starts) if starts else 0.0
    return wall, total, machine


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def write_results(claims: Sequence[Claim], root: Path, docs: Path) -> Path:
    """Write `docs/results.md` and its figures (`docs/results/<claim>.png`) from the run dirs."""
    figures = docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results: the lecture's claims, re-run",
        "",
        "[README](../README.md) · [report](report.md) · [lecture](lecture.md)",
        "",
        "Each section is one sweep, `lightsuite-train experiment=claims/<name>`; `make results` runs "
        "the ones "
        "that are not on disk (finished jobs are not run again, killed ones continue) and writes this page "
        "from their run dirs (`lightsuite-report --claims`). Tables: mean ± s.d. over the finished seeds. "
        f"Written {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()} "
        f"({os.cpu_count()} CPUs).",
        "",
    ]
    for i, claim in enumerate(claims, 1):
        jobs = claim_jobs(claim, root)
        groups, table = summarize(claim, jobs)
        lines += [f"## {i}. {claim.title}", "", claim.statement, ""]
        lines += [
            f"`lightsuite-train experiment=claims/{claim.name}`"
            + (f" ({claim.scale})" if claim.scale else ""),
            "",
        ]
        if not jobs:
            lines += ["*Not run yet: `make results` runs it.*", ""]
            continue
        wall, total, machine = _spent(jobs)
        done = sum(j.status == DONE for j in jobs)
        lines += [
            f"{done} of {len(jobs)} jobs finished; {_duration(wall)} from the first start to the last end "
            f"({_duration(total)} of job time) on {machine or 'an unrecorded machine'}.",
            "",
        ]
        header, rows = _cells(claim, groups)
        lines += [markdown(header, rows)]
        fig = claim.figure(claim, groups)
        if fig is not None:
            name = f"{claim.name}.png"
            fig.savefig(figures / name, format="png", dpi=80)
            lines += [f"![{claim.title}](results/{name})", ""]
        lines += [f"**Did it hold?** {claim.verdict(table)}", ""]
    out = docs / "results.md"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out)
    return out


def results(names: str | None, root: Path, docs: Path, run: bool = True, extra: Sequence[str] = ()) -> Path:
    """`make results`: each chosen claim's sweep run (or continued), then the page written."""
    claims = chosen(names)
    failed = []
    if run:
        for claim in claims:
            started = time.monotonic()
            if run_claim(claim, root, extra) != 0:
                failed.append(claim.name)
            print(f"claim {claim.name}: {_duration(time.monotonic() - started)}", file=sys.stderr, flush=True)
    out = write_results(claims, root, docs)
    if failed:
        print(f"claims with failed jobs (their rows say so): {', '.join(failed)}", file=sys.stderr)
    return out

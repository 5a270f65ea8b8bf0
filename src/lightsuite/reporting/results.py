"""`make results` (`lightsuite-report --claims`): each claim's sweep run or continued, then
`docs/results.md` written from the run dirs (claims.py says what each claim is and how to read it).

The sweeps write into `outputs/claims/<sweep>/<overrides>/` under the directory it runs from: a
finished job returns its `metrics.json` without training, a killed one continues from its
checkpoint, so running it again only does what is missing.
"""

from __future__ import annotations

import base64
import html
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lightsuite.errors import ConfigError
from lightsuite.io import write_bytes, write_text
from lightsuite.reporting.claims import CLAIMS, Claim
from lightsuite.reporting.page import CSS, _html_table
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
            per_job = f"{cpus} CPU{'' if cpus == 1 else 's'}" if cpus else "? CPUs"
            machine = f"{prov.get('host', '?')} ({per_job} per job)"
    wall = max(ends) - min(starts) if starts else 0.0
    return wall, total, machine


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class Section:
    """One claim's part of the page, as the markdown page and the claim's own HTML page show it."""

    claim: Claim
    jobs: list[Job]
    lines: list[str] = field(default_factory=list)  # the time line, or why nothing is shown
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: bytes | None = None
    verdict: str = ""
    extra: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        return f"lightsuite-train experiment=claims/{self.claim.name}"


def section(claim: Claim, root: Path) -> Section:
    """Read a claim's jobs and make its table, figure and verdict."""
    jobs = claim_jobs(claim, root)
    found = Section(claim, jobs)
    if not jobs:
        found.lines = ["Not run yet: `make results` runs it."]
        return found
    if claim.prepare is not None:
        claim.prepare(jobs)
    groups, table = summarize(claim, jobs)
    wall, total, machine = _spent(jobs)
    done = sum(j.status == DONE for j in jobs)
    found.lines = [
        f"{done} of {len(jobs)} jobs finished; {_duration(wall)} from the first start to the last end "
        f"({_duration(total)} of job time) on {machine or 'an unrecorded machine'}."
    ]
    found.header, found.rows = _cells(claim, groups)
    fig = claim.figure(claim, groups)
    if fig is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        found.figure = buffer.getvalue()
    found.verdict = claim.verdict(table)
    found.extra = claim.extra(jobs) if claim.extra is not None else []
    return found


def _markdown(number: int, part: Section) -> list[str]:
    claim = part.claim
    scale = f" ({claim.scale})" if claim.scale else ""
    lines = [f"## {number}. {claim.title}", "", claim.statement, "", f"`{part.command}`{scale}", ""]
    lines += [*part.lines, ""]
    if part.rows:
        lines += [markdown(part.header, part.rows)]
    if part.figure is not None:
        lines += [f"![{claim.title}](results/{claim.name}.png)", ""]
    if part.verdict:
        lines += [f"**Did it hold?** {part.verdict}", ""]
    return lines + part.extra


def _html(part: Section) -> str:
    """The claim's section as a self-contained page (styles inline, the figure as a data URI)."""
    esc, claim = html.escape, part.claim
    body = [
        f"<h1>{esc(claim.title)}</h1><p>{esc(claim.statement)}</p>",
        f"<p><code>{esc(part.command)}</code> <span class=meta>{esc(claim.scale)}</span></p>",
        *(f"<p class=meta>{esc(line)}</p>" for line in part.lines),
    ]
    if part.rows:
        body.append(_html_table("claim", part.header, part.rows))
    if part.figure is not None:
        src = "data:image/png;base64," + base64.b64encode(part.figure).decode()
        body.append(f'<figure><img src="{src}" alt="{esc(claim.title)}"></figure>')
    if part.verdict:
        body.append(f"<p id=verdict><b>Did it hold?</b> {esc(part.verdict)}</p>")
    text = "\n".join(line for line in part.extra if not line.startswith("```"))
    if text.strip():
        body.append(f"<pre>{esc(text)}</pre>")
    head = f"<meta charset=utf-8><title>{esc(claim.title)}</title>\n<style>{CSS}</style>"
    return (
        f"<!doctype html>\n<html lang=en><head>{head}</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_results(claims: Sequence[Claim], root: Path, docs: Path) -> Path:
    """Write `docs/results.md` with its figures (`docs/results/<claim>.png`), and each claim's own
    page `outputs/claims/<sweep>/<claim>.html`, from the run dirs."""
    figures = docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results: the lecture's claims, re-run",
        "",
        "[README](../README.md) · [report](report.md) · [lecture](lecture.md)",
        "",
        "Each section is one sweep, `lightsuite-train experiment=claims/<name>`; `make results` runs "
        "the ones that are not on disk (finished jobs are not run again, killed ones continue) and "
        "writes this page from their run dirs (`lightsuite-report --claims`), and each claim's own "
        "page beside its runs (`outputs/claims/<sweep>/<claim>.html`). Tables: mean ± s.d. over the "
        f"finished seeds. Written {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} on "
        f"{platform.node()} ({os.cpu_count()} CPUs).",
        "",
    ]
    parts = [section(claim, root) for claim in claims]
    # jobs shared by two claims (degradation and the ResNet table) count once
    jobs = {job.path.resolve(): job for part in parts for job in part.jobs}
    wall, total, _ = _spent(list(jobs.values()))
    if jobs:
        ran = sum(bool(part.jobs) for part in parts)
        lines += [
            f"All told: {len(jobs)} jobs of {ran} of these {len(parts)} claims, {_duration(total)} of "
            f"job time, {_duration(wall)} from the first start to the last end (pauses included, when "
            "a run was stopped and continued).",
            "",
        ]
    for number, part in enumerate(parts, 1):
        lines += _markdown(number, part)
        if part.figure is not None:
            write_bytes(figures / f"{part.claim.name}.png", part.figure)
        if part.jobs:
            page = root / "outputs" / "claims" / part.claim.sweep / f"{part.claim.name}.html"
            write_text(page, _html(part))
    return write_text(docs / "results.md", "\n".join(lines))


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

"""`lightsuite-report DIR [DIR ...]`: turn a multirun (or any run dirs) into tables, figures and a page.

lightsuite-report outputs/multirun/2026-11-27/10-00-00               # writes .../10-00-00/report/
lightsuite-report outputs/multirun/2026-11-27 metrics=val/loss,train/acc output=talk/
lightsuite-report outputs/2026-11-27/09-00-00 outputs/2026-11-27/09-30-00  # two single runs

A plain argument parser rather than Hydra: the report reads run dirs instead of composing a
config, and a Hydra app would leave its own run dir (with `.hydra/`) that later reports would
mistake for a run. `key=value` options keep the feel of the other commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lightsuite.errors import ConfigError, exit_on_user_error

OPTIONS = ("metrics", "output", "run")
# a job's row in the terminal table by its status (the best job is bold yellow)
STYLES = {"failed": "red", "unfinished": "dim", "pruned": "magenta"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 1, like every lightsuite command
        raise ConfigError(f"{message} (usage: lightsuite-report DIR [DIR ...] [metrics=a,b] [output=DIR])")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """DIRs, then `metrics=a,b` and `output=DIR` (also as `--metrics`, `--output`)."""
    parser = _Parser(prog="lightsuite-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("args", nargs="*", metavar="DIR | metrics=a,b | output=DIR")
    parser.add_argument("--metrics", help="comma-separated metric names (default: the task's report_metrics)")
    parser.add_argument("--output", help="report folder (default: DIR/report of the first DIR)")
    parser.add_argument(
        "--claims",
        nargs="?",
        const="all",
        help="run the lecture's claims that are not on disk, then write docs/results.md (names: a,b; "
        "run=false: only the page; output=DIR: another docs folder)",
    )
    parser.add_argument("--run", default="true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.claims is not None and "=" in ns.claims:  # `--claims run=false`: an option, not claim names
        ns.args.insert(0, ns.claims)
        ns.claims = "all"
    ns.dirs = []
    for arg in ns.args:
        key, sep, value = arg.partition("=")
        if sep and not Path(arg).exists():
            if key not in OPTIONS:
                raise ConfigError(f"unknown option {key}=: lightsuite-report takes {'=, '.join(OPTIONS)}=")
            setattr(ns, key, value)
        else:
            ns.dirs.append(arg)
    ns.metrics = [m.strip() for m in ns.metrics.split(",") if m.strip()] if ns.metrics else None
    return ns


def report(argv: Sequence[str] | None = None, console: Console | None = None) -> Path:
    """Build and write the report the arguments ask for; returns the report folder."""
    from lightsuite.reporting.page import default_output, job_rows, make_report, write_report
    from lightsuite.reporting.study import summary_line

    ns = parse_args(argv)
    if ns.claims is not None:
        return _claims(ns, console or Console())
    built = make_report(ns.dirs, ns.metrics)
    out = write_report(built, ns.output or default_output(ns.dirs))
    console = console or Console()
    header, rows = job_rows(built)
    table = Table(title=f"{len(built.jobs)} jobs", header_style="bold")
    shown = [i for i, name in enumerate(header) if name != "error"]
    for i in shown:
        table.add_column(header[i], overflow="fold")
    for job, row in zip(built.jobs, rows, strict=True):
        style = "bold yellow" if any(job is b for b in built.tied) else STYLES.get(job.status)
        table.add_row(*(row[i] for i in shown), style=style)
    console.print(table)
    for job in built.jobs:
        if job.error:
            console.print(f"[red]{job.name} failed:[/] {job.error}", highlight=False, soft_wrap=True)
    for found in built.studies:
        console.print(f"{summary_line(found)} (storage: {found.storage})", highlight=False, soft_wrap=True)
    for note in built.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    # unwrapped, so the path can be copied whole
    console.print(f"report: {out / 'index.html'}", highlight=False, soft_wrap=True)
    return out


def _claims(ns: argparse.Namespace, console: Console) -> Path:
    """`--claims`: the claims' sweeps under the current directory's outputs/claims, then the results page."""
    from lightsuite.reporting.results import results

    if ns.run not in ("true", "false"):
        raise ConfigError(f"run={ns.run}: use run=true (run what is missing, the default) or run=false")
    if ns.dirs:
        raise ConfigError(f"--claims reads outputs/claims/ under this directory, not {ns.dirs[0]}: drop it")
    out = results(ns.claims, Path.cwd(), Path(ns.output or "docs"), run=ns.run == "true")
    console.print(f"results: {out}", highlight=False, soft_wrap=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    with exit_on_user_error():
        report(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

"""Building a report from run dirs: tables, figures and `index.html`, written all at once or not at all."""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lightsuite.errors import ConfigError
from lightsuite.io import RUN_FILE
from lightsuite.reporting import pictures, plots, study, tables
from lightsuite.reporting.runs import (
    DONE,
    FAILED,
    HISTORY_FILE,
    PRUNED,
    REPORT_DIR,
    UNFINISHED,
    Job,
    find_jobs,
)
from lightsuite.reporting.shared import shared_html, shared_settings


@dataclass
class Report:
    """Everything a report shows, before anything is written."""

    sources: list[str]
    jobs: list[Job]
    keys: list[str]
    metrics: list[str]
    columns: list[str]
    optimized: str | None
    best: Job | None
    mode: str | None
    groups: list[tables.Setting]
    figures: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the Optuna studies the sweeps' summaries name, read back from their storage
    studies: list[study.StudyReport] = field(default_factory=list)
    # what the jobs' test stages drew (a classifier's confusion matrix and worst test images)
    pictures: list[pictures.JobPictures] = field(default_factory=list)
    # every job tied with `best` for the best value (`best` alone when none ties)
    tied: list[Job] = field(default_factory=list)
    # per group, the settings every job shares (`shared.py`)
    shared: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def make_report(dirs: Sequence[str], metrics: Sequence[str] | None = None) -> Report:
    """Read the runs under `dirs` and build the report's tables and figures in memory."""
    if not dirs:
        raise ConfigError("no DIR given: lightsuite-report outputs/multirun/<date>/<time> [more dirs]")
    jobs = find_jobs(dirs)
    logged = sorted(set().union(*(job.metric_names for job in jobs)))
    # a per-step metric (`train/loss`) that only its epoch mean stands for (a run without the CSV log)
    means = [m.removesuffix("_epoch") for m in logged if m.endswith("_epoch")]
    drawable = {*logged, *means}
    notes: list[str] = []
    if metrics:
        missing = [m for m in metrics if m not in drawable]
        if missing:
            raise ConfigError(
                f"metrics={','.join(missing)} was not logged by any job; "
                f"logged: {', '.join(logged) or 'nothing'}"
            )
        chosen = list(dict.fromkeys(metrics))
    else:
        chosen = default_metrics(jobs, notes)
        skipped = [m for m in chosen if m not in drawable]
        if skipped:
            notes.append(f"not logged by any job, not plotted: {', '.join(skipped)}")
        chosen = [m for m in chosen if m in drawable]
        if not chosen:
            raise ConfigError(
                f"no job logged the default metrics; choose with metrics=a,b from: {', '.join(logged)}"
            )

    optimized = _optimized_metric(jobs)
    best, mode = tables.best_job(jobs, optimized)
    if optimized and best is None:
        notes.append(f"no best job marked: no finished job logged {optimized} or its direction is unknown")
    keys = tables.swept_keys(jobs)
    groups = tables.settings(jobs, keys)
    tied = tables.tied_with(jobs, best, optimized)
    if len(tied) > 1:
        names = ", ".join(job.name for job in tied)
        notes.append(f"a tie for best: jobs {names} have the same {optimized}; each is starred")
    report = Report(
        sources=[str(d) for d in dirs],
        jobs=jobs,
        keys=keys,
        metrics=chosen,
        columns=_columns(optimized, chosen, logged),
        optimized=optimized,
        best=best,
        mode=mode,
        groups=groups,
        notes=notes,
        tied=tied,
        shared=shared_settings(jobs, keys),
    )
    for metric in chosen:
        drawn = plots.curve_metric(jobs, metric)
        fig = plots.curves_figure(groups, drawn) if drawn else None
        if fig is not None:
            name = f"curves_{tables.slug(metric)}.png"
            report.figures[name] = (f"{tables.label(drawn)} during training", plots.png(fig))
    blank = [job.name for job in jobs if not job.history and job.status != FAILED]
    if blank:
        notes.append(
            f"no training curves for job(s) {', '.join(blank)}: neither csv/metrics.csv nor "
            f"{HISTORY_FILE} in the run dir (a run from before the suite kept {HISTORY_FILE}, with "
            "a logger other than csv, or one that ended before its first epoch)"
        )
    for key in plots.numeric_keys(jobs, keys):
        shown = [*([optimized] if optimized in logged else []), *chosen]
        # the epoch mean of a per-step metric, as in the tables
        shown = list(dict.fromkeys(f"{m}_epoch" if f"{m}_epoch" in logged else m for m in shown))
        fig = plots.hparam_figure(jobs, key, keys, shown)
        if fig is not None:
            report.figures[f"hparam_{tables.slug(key)}.png"] = (f"final metrics vs {key}", plots.png(fig))
    report.studies = study.find_studies(dirs, jobs, report.notes)
    report.pictures = pictures.job_pictures(jobs, best, report.notes)
    return report


def default_metrics(jobs: Sequence[Job], notes: list[str]) -> list[str]:
    """The `report_metrics` each job's task wrote into its `run.json` (in order, no repeats);
    else `optimized_metric`. Read from the run dirs: the report imports none of the code that ran."""
    chosen: list[str] = []
    older = [job.name for job in jobs if "report_metrics" not in job.run and job.config.get("task")]
    for job in jobs:
        chosen += [m for m in job.run.get("report_metrics", ()) if m not in chosen]
    if older:
        notes.append(
            f"{len(older)} run dir(s) hold no {RUN_FILE} (written before it existed): their task's default "
            "metrics are unknown; name them with metrics=a,b"
        )
    optimized = _optimized_metric(jobs)
    if not chosen and optimized:
        chosen.append(optimized)
    return chosen


def write_report(report: Report, output: str | os.PathLike) -> Path:
    """Write every file into a temporary folder beside `output`, then swap it in: never half a report."""
    output = Path(output).expanduser()
    if output.exists() and not _replaceable(output):
        raise ConfigError(
            f"output={output} exists and is not a lightsuite report; give a new or empty folder "
            "(an earlier report there is replaced)"
        )
    files = _files(report, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            (tmp / name).write_bytes(data)
        tmp.chmod(0o755)
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def _replaceable(folder: Path) -> bool:
    """An empty folder or an earlier report: nothing else is ever deleted by a re-run."""
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.iterdir()]
    return not names or ("index.html" in names and all(_REPORT_FILE.fullmatch(n) for n in names))


_REPORT_FILE = re.compile(
    r"index\.html|(jobs|settings)\.(md|csv)|trials(_\w+)?\.(md|csv)|(curves|hparam)_\w+\.png"
    r"|optuna_(history|importances)(_\w+)?\.png"
)


def default_output(dirs: Sequence[str]) -> Path:
    return Path(dirs[0]).expanduser() / REPORT_DIR


def job_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    return tables.job_table(report.jobs, report.keys, report.columns, report.tied)


def _files(report: Report, output: Path | None = None) -> dict[str, str | bytes]:
    header, rows = job_rows(report)
    files: dict[str, str | bytes] = {
        "jobs.md": tables.markdown(header, rows),
        "jobs.csv": tables.job_csv(report.jobs, report.keys, report.tied),
    }
    if _repeated(report):
        files["settings.md"] = tables.markdown(*tables.setting_table(report.groups, report.columns))
        files["settings.csv"] = tables.setting_csv(report.groups, report.columns)
    files.update({name: data for name, (_, data) in report.figures.items()})
    for found in report.studies:
        files[f"trials{found.suffix}.md"] = tables.markdown(*study.trial_table(found))
        files[f"trials{found.suffix}.csv"] = study.trial_csv(found)
        files.update({name: data for name, (_, data) in found.figures.items()})
    files["index.html"] = page(report, output)
    return files


def page(report: Report, output: Path | None = None) -> str:
    """`index.html`: one self-contained page (inline styles, images as data URIs), no network needed.

    With the report's `output` folder known, each job's name links to its run dir (relative, so a
    sweep copied with its report keeps its links).
    """
    esc = html.escape
    counts = {s: sum(j.status == s for j in report.jobs) for s in (DONE, PRUNED, FAILED, UNFINISHED)}
    summary = f"{len(report.jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if report.best is not None:
        value = tables.fmt(report.best.metric(report.optimized))
        tied = report.tied if len(report.tied) > 1 else [report.best]
        names = ", ".join(f"<b>{esc(job.name)}</b>" for job in tied)
        summary += f". Best by <code>{esc(report.optimized)}</code> ({report.mode}imized): "
        summary += f"a tie between jobs {names}, each" if len(tied) > 1 else names
        summary += f" = {value} (★)"
    links = [_run_link(job, output) for job in report.jobs] if output is not None else []
    parts = [
        f"<h1>lightsuite report</h1><p class=meta>{esc(', '.join(report.sources))} · "
        f"{datetime.now():%Y-%m-%d %H:%M}</p>",
        f"<p id=summary>{summary}.</p>",
        *(f"<p class=note>{esc(n)}</p>" for n in report.notes),
        *shared_html(report.shared, len(report.jobs)),
        "<h2>Jobs</h2>",
        _html_table("jobs", *job_rows(report), [_row_class(job, report.tied) for job in report.jobs], links),
        "<p class=meta>Final metrics from <code>metrics.json</code>; for a job that did not finish, the "
        "last logged value. A metric named <i>(epoch mean)</i> is the mean over the epoch's batches "
        "(<code>train/loss</code> alone is its last logged batch). Wall time from <code>run.json</code> "
        "(every process that ran in the run dir); epochs from its logged history. Also as "
        "<a href=jobs.md>markdown</a> and <a href=jobs.csv>CSV</a> (every metric).</p>",
    ]
    if _repeated(report):
        parts += [
            "<h2>Settings (mean ± s.d. over seeds)</h2>",
            _html_table("settings", *tables.setting_table(report.groups, report.columns)),
            "<p class=meta>Over finished jobs; also as <a href=settings.md>markdown</a> and "
            "<a href=settings.csv>CSV</a>.</p>",
        ]
    for found in report.studies:
        parts += _study_section(found)
    for section, prefix in (("Training curves", "curves_"), ("Final metrics vs hyperparameters", "hparam_")):
        figures = [(n, c, d) for n, (c, d) in report.figures.items() if n.startswith(prefix)]
        if figures:
            parts.append(f"<h2>{section}</h2>")
        elif prefix == "curves_":
            parts.append(
                f"<h2>{section}</h2><p class=note id=no-curves>No job logged a history of "
                f"{esc(', '.join(report.metrics))}: curves come from each run dir's "
                f"<code>csv/metrics.csv</code> or <code>{HISTORY_FILE}</code>.</p>"
            )
        parts += [_figure(name, caption, data) for name, caption, data in figures]
    parts += _pictures_section(report)
    body = "\n".join(parts)
    head = f"<meta charset=utf-8><title>lightsuite report</title>\n<style>{CSS}</style>"
    return f"<!doctype html>\n<html lang=en><head>{head}</head>\n<body>\n{body}\n</body></html>\n"


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left }
th { background: #f2f2f2 }
tr.best { background: #fff4c2; font-weight: 600 }
tr.failed td { color: #a00 }
tr.unfinished td, tr.running td, tr.waiting td { color: #777 }
tr.pruned td { color: #6a4c93 }
figure { margin: 1.5em 0 }
img { max-width: 100%; border: 1px solid #eee }
.meta, figcaption { color: #666; font-size: 90% }
.note { color: #8a5a00 }
"""


def _run_link(job: Job, output: Path) -> str:
    """The run dir as a link from the report folder, relative where it can be."""
    try:
        return Path(os.path.relpath(job.path.resolve(), output.resolve())).as_posix() + "/"
    except ValueError:  # another drive
        return job.path.resolve().as_uri()


def _study_section(found: study.StudyReport) -> list[str]:
    """An Optuna study: what it holds, its trials table and Optuna's figures of it."""
    esc = html.escape
    best = ["best" if t is found.best else t.state for t in found.trials]
    return [
        f"<h2>Optuna study <code>{esc(found.name)}</code></h2>",
        f"<p class=study>{esc(study.summary_line(found))}.</p>",
        _html_table(f"trials{found.suffix}", *study.trial_table(found), best),
        f"<p class=meta>Read from <code>{esc(found.storage)}</code>. A pruned trial's objective is the "
        f"last value it reported. Also as <a href=trials{found.suffix}.md>markdown</a> and "
        f"<a href=trials{found.suffix}.csv>CSV</a>.</p>",
        *(_figure(name, caption, data) for name, (caption, data) in found.figures.items()),
    ]


def _pictures_section(report: Report) -> list[str]:
    """Each job's test pictures, inline (the page stays one file); the best job's or a lone job's open."""
    if not report.pictures:
        return []
    esc = html.escape
    parts = ["<h2>Test pictures</h2>"]
    for found in report.pictures:
        job = found.job
        shown = job is report.best or len(report.pictures) == 1
        star = " ★" if any(job is b for b in report.tied) else ""
        opened = " open" if shown else ""
        parts.append(f"<details class=pictures{opened}><summary>job <b>{esc(job.name)}</b>{star}</summary>")
        for name, caption, data in found.pictures:
            src = "data:image/png;base64," + base64.b64encode(data).decode()
            parts.append(
                f'<figure><img src="{src}" alt="{esc(caption)}"><figcaption>{esc(caption)} '
                f"(<code>{esc(str(job.path / name))}</code>)</figcaption></figure>"
            )
        parts.append("</details>")
    return parts


def _row_class(job: Job, best: Sequence[Job]) -> str:
    return "best" if any(job is b for b in best) else job.status


def _figure(name: str, caption: str, data: bytes) -> str:
    esc = html.escape
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    return (
        f'<figure><img src="{src}" alt="{esc(caption)}"><figcaption>{esc(caption)} '
        f"(<a href={name}>{name}</a>)</figcaption></figure>"
    )


def _html_table(
    table_id: str,
    header: list[str],
    rows: list[list[str]],
    classes: Sequence[str] = (),
    links: Sequence[str] = (),
) -> str:
    """A table; `classes` gives each row its class (a job's status, `best`), none by default; `links`
    makes each row's first cell a link there (a job's run dir)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if classes else ""
        cells = [f"<td>{esc(c)}</td>" for c in row]
        if links and cells:
            cells[0] = f'<td><a href="{esc(links[i])}">{esc(row[0])}</a></td>'
        body.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    return f"<table id={table_id}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _columns(optimized: str | None, chosen: Sequence[str], logged: Sequence[str]) -> list[str]:
    """Table columns: the optimized metric, the chosen ones, and the test metric of each chosen one."""
    tests = [f"test/{m.split('/', 1)[1]}" for m in chosen if "/" in m]
    wanted = [*([optimized] if optimized else []), *chosen, *tests]
    # a per-step metric's epoch mean where the task logs one: the last batch's loss is noise
    wanted = [f"{m}_epoch" if f"{m}_epoch" in logged else m for m in wanted]
    return [m for m in dict.fromkeys(wanted) if m in logged]


def _optimized_metric(jobs: Sequence[Job]) -> str | None:
    names = [job.config.get("optimized_metric") for job in jobs if job.config.get("optimized_metric")]
    return str(names[0]) if names else None


def _repeated(report: Report) -> bool:
    return any(len(group.jobs) > 1 for group in report.groups)

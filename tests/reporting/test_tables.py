"""The report's numbers as a reader sees them: mean ± s.d. rounded to what the seeds support, ties for
best starred and said, each job's epochs, parameter count and wall time."""

from __future__ import annotations

import csv
import json
import re

import pytest
from sweep_files import synthetic_sweep

from lightsuite.reporting import tables
from lightsuite.reporting.page import make_report, write_report
from lightsuite.reporting.runs import find_jobs


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # s.d. 0.0707: its first significant digit is the second decimal
        ([0.8, 0.9], "0.85 ± 0.07"),
        # mean 0.93, s.d. exactly 0.01
        ([0.92, 0.93, 0.94], "0.93 ± 0.01"),
        # s.d. 0.001414: three decimals
        ([1.234, 1.236], "1.235 ± 0.001"),
        # s.d. 0.0096 rounds up to 0.01: two decimals, not three
        ([1.0, 1.013576], "1.01 ± 0.01"),
        # s.d. 20 of 100, 120, 140: to the tens
        ([100.0, 120.0, 140.0], "120 ± 20"),
        # no spread, a single seed: the value at the table's fixed precision
        ([0.5, 0.5], "0.5 ± 0"),
        ([0.93061], "0.9306"),
        ([], "—"),
    ],
)
def test_mean_and_sd_are_rounded_to_the_sds_first_digit(values, expected):
    assert tables.mean_std(values) == expected


def test_a_tie_for_best_stars_every_tied_job_and_says_so(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    final = json.loads((sweep / "0" / "metrics.json").read_text())
    # job 0 reaches job 1's best val/acc: its history agrees, so it still counts as finished
    (sweep / "0" / "metrics.json").write_text(json.dumps({**final, "val/acc_best": 0.9}))
    report = make_report([str(sweep)])
    assert [job.name for job in report.tied] == ["0", "1"]
    assert any(
        note.startswith("a tie for best: jobs 0, 1 have the same val/acc_best") for note in report.notes
    )
    out = write_report(report, sweep / "report")
    rows = list(csv.DictReader((out / "jobs.csv").open()))
    assert [r["best"] for r in rows] == ["true", "true", "false", "false"]
    md = (out / "jobs.md").read_text().splitlines()[2:]
    assert ["★" in line for line in md] == [True, True, False, False]
    page = (out / "index.html").read_text()
    assert "a tie between jobs <b>0</b>, <b>1</b>, each = 0.9 (★)" in page
    assert page.count("<tr class='best'>") == 2


def test_no_tie_stars_one_job(tmp_path):
    report = make_report([str(synthetic_sweep(tmp_path))])
    assert [job.name for job in report.tied] == ["1"]
    assert not any("tie" in note for note in report.notes)


def test_wall_time_sums_the_processes_that_ran_in_the_run_dir(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    run = json.loads((sweep / "0" / "run.json").read_text())
    # killed after 90 s, requeued for 45 s, then a process that never reached its end
    segments = [
        {"start": "2026-12-01T10:00:00+01:00", "end": "2026-12-01T10:01:30+01:00"},
        {"start": "2026-12-01T09:00:00+00:00", "end": "2026-12-01T09:00:45+00:00"},
        {"start": "2026-12-01T09:10:00+00:00", "end": None},
    ]
    provenance = {"start": segments[-1]["start"], "end": None, "segments": segments}
    (sweep / "0" / "run.json").write_text(json.dumps({**run, "provenance": provenance, "parameters": 272474}))
    jobs = find_jobs([sweep])
    assert jobs[0].wall_seconds == 135.0 and jobs[1].wall_seconds is None
    assert jobs[0].parameters == 272474 and jobs[0].epochs == 3 and jobs[3].epochs == 2
    header, rows = tables.job_table(jobs, ["seed"], ["val/acc"])
    cells = dict(zip(header, rows[0], strict=True))
    assert (cells["epochs"], cells["params"], cells["wall time"]) == ("3", "272,474 (0.27 M)", "2 min 15 s")
    assert dict(zip(header, rows[1], strict=True))["wall time"] == "—"
    assert [tables.duration(s) for s in (44.6, 3725)] == ["45 s", "1 h 02 min"]


def test_each_job_links_to_its_run_dir(tmp_path):
    sweep = synthetic_sweep(tmp_path)
    out = write_report(make_report([str(sweep)]), sweep / "report")
    page = (out / "index.html").read_text()
    links = re.findall(r'<td><a href="([^"]+)">(\w+)</a></td>', page)
    assert links == [(f"../{name}/", name) for name in ("0", "1", "2", "3")]
    assert all((out / href).resolve() == sweep / name for href, name in links)
    elsewhere = write_report(make_report([str(sweep)]), tmp_path / "talk" / "figures")
    href = re.search(r'<td><a href="([^"]+)">0</a>', (elsewhere / "index.html").read_text()).group(1)
    assert (elsewhere / href).resolve() == sweep / "0"

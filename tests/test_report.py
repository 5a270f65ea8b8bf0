"""`lightsuite-report` as a user runs it: bad input, a real multirun, the page in headless Chromium."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, run_cli
from rich.console import Console
from sweep_files import synthetic_sweep

from lightsuite.report import main, report

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
# reads the page after it loaded and writes what a person would see into the DOM for --dump-dom
PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    jobRows: document.querySelectorAll('#jobs tbody tr').length,
    headers: [...document.querySelectorAll('#jobs th')].map(th => th.textContent),
  });
  document.body.appendChild(out);
});</script>"""


def _fails_with_one_line(argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_bad_input_is_one_line_and_leaves_no_report(tmp_path, capsys):
    sweep = synthetic_sweep(tmp_path)
    assert "nope is not a directory" in _fails_with_one_line([str(tmp_path / "nope")], capsys)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert "no runs in" in _fails_with_one_line([str(tmp_path / "empty")], capsys)
    err = _fails_with_one_line([str(sweep), "metrics=val/acc,val/nope"], capsys)
    # lists what exists, so the user can pick
    assert "val/nope" in err and "train/loss, val/acc" in err and "val/acc," not in err.split(";")[0]
    assert "unknown option" in _fails_with_one_line([str(sweep), "metric=val/acc"], capsys)
    assert "no DIR" in _fails_with_one_line([], capsys)
    # an existing folder that is not a report is never replaced
    (tmp_path / "talk").mkdir()
    (tmp_path / "talk" / "slides.tex").write_text("mine")
    assert "not a lightsuite report" in _fails_with_one_line(
        [str(sweep), f"output={tmp_path / 'talk'}"], capsys
    )
    assert [p.name for p in (tmp_path / "talk").iterdir()] == ["slides.tex"]
    assert not (sweep / "report").exists() and not (tmp_path / "empty" / "report").exists()
    assert not [p for p in sweep.iterdir() if p.name.startswith(".")]


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "lightsuite-report"
    if not script.exists():
        pytest.skip(f"{script} missing: install with pip install -e .")
    proc = subprocess.run([str(script), str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_failed_build_keeps_the_previous_report(tmp_path, capsys):
    sweep = synthetic_sweep(tmp_path)
    main([str(sweep), "metrics=val/acc"])
    before = (sweep / "report" / "index.html").read_text()
    _fails_with_one_line([str(sweep), "metrics=val/nope"], capsys)
    assert (sweep / "report" / "index.html").read_text() == before


def test_output_and_metrics_options(tmp_path, capsys):
    sweep = synthetic_sweep(tmp_path)
    out = tmp_path / "talk" / "figures"
    capsys.readouterr()
    main([str(sweep), "metrics=train/loss", f"output={out}"])
    assert sorted(p.name for p in out.glob("*.png")) == [
        "curves_train_loss.png",
        "hparam_task_optimizer_lr.png",
    ]
    shown = capsys.readouterr().out
    assert "3 failed: error: train/loss is nan" in shown and f"{out / 'index.html'}" in shown
    assert not (sweep / "report").exists()


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> Path:
    """A real multirun of the default experiment: two learning rates for 2 epochs, and a job that fails."""
    root = tmp_path_factory.mktemp("real")
    sweep = root / "sweep"
    args = [*FAST, "trainer.max_epochs=2", "task.optimizer.lr=0.02,0.2,-1", f"hydra.sweep.dir={sweep}"]
    proc = run_cli("lightsuite.train", "-m", *args, cwd=root, env={"OMP_NUM_THREADS": "1"})
    # the third job fails (torch refuses a negative learning rate): recorded failed, the sweep goes on
    assert proc.returncode == 0 and "task.optimizer.lr=-1 was refused by SGD" in proc.stderr, proc.stderr[
        -2000:
    ]
    # in this process: a second interpreter would import torch and Lightning again for the task class
    shown = Console(file=io.StringIO(), width=200)
    assert report([str(sweep)], shown) == sweep / "report"
    assert "2 failed: error: task.optimizer.lr=-1 was refused by SGD: Invalid" in shown.file.getvalue()
    return sweep


@pytest.mark.slow
def test_report_of_a_real_multirun(real_sweep):
    out = real_sweep / "report"
    rows = list(csv.DictReader((out / "jobs.csv").open()))
    assert [r["task.optimizer.lr"] for r in rows] == ["0.02", "0.2", "-1"]
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[2]["error"].startswith(
        "error: task.optimizer.lr=-1 was refused by SGD: Invalid learning rate: -1;"
    )
    finals = [json.loads((real_sweep / r["job"] / "metrics.json").read_text()) for r in rows[:2]]
    for row, final in zip(rows, finals, strict=False):
        for key in ("val/acc", "val/acc_best", "train/loss", "test/acc"):
            assert float(row[key]) == final[key]
    best = max(range(2), key=lambda i: finals[i]["val/acc_best"])
    assert [r["best"] == "true" for r in rows] == [i == best for i in range(3)]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["curves_train_loss.png", "curves_val_acc.png", "hparam_task_optimizer_lr.png"]
    assert (
        "task.optimizer.lr=-1 was refused by SGD: Invalid learning rate: -1;" in (out / "jobs.md").read_text()
    )


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run does)"
)
def test_page_in_headless_chromium(real_sweep, tmp_path):
    page = (real_sweep / "report" / "index.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    proc = subprocess.run(
        [*base, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe output from Chromium: {proc.stderr[-1500:]}"
    seen = json.loads(html.unescape(found.group(1)))
    # the report's three figures and each finished job's two test pictures, every one decoded
    assert seen["images"] == 3 + 2 * 2 and seen["loaded"] == seen["images"], seen
    assert seen["jobRows"] == 3 and seen["headers"][:3] == ["job", "task.optimizer.lr", "status"]

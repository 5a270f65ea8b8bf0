"""The live view of a search: the real `optuna-dashboard` serving a search's journal file.

What a user runs to watch a search (`optuna-dashboard <sweep dir>/optuna.journal`), started as its
own process on a free local port, read through its HTTP API (the routes in
`optuna_dashboard/_app.py`: `/api/studies`, `/api/studies/<id>`) and seen in headless Chromium.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from PIL import Image

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
# installed with optuna-dashboard, a dependency of the suite
DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
NAME = "lightsuite-dashboard-check"
# (learning rate, how the trial ended, the val/acc_best it reported each epoch)
TRIALS = [
    (0.1, TrialState.COMPLETE, [0.6, 0.8]),
    (0.01, TrialState.COMPLETE, [0.7, 0.9]),
    (0.3, TrialState.PRUNED, [0.2]),
    (0.001, TrialState.FAIL, []),
    (0.05, TrialState.COMPLETE, [0.5, 0.85]),
]
BEST = (1, 0.9)  # trial number and value
PNG = b"\x89PNG\r\n\x1a\n"


def _write_study(journal: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=NAME, storage=storage, direction="maximize")
    for lr, state, reported in TRIALS:
        study.enqueue_trial({"task.optimizer.lr": lr})
        trial = study.ask({"task.optimizer.lr": FloatDistribution(1e-4, 1.0, log=True)})
        for epoch, value in enumerate(reported):
            trial.report(value, epoch)
        if state == TrialState.COMPLETE:
            study.tell(trial, reported[-1])
        else:
            study.tell(trial, state=state)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """The dashboard on a journal holding one finished study: its base URL and the study's id."""
    assert DASHBOARD.exists(), f"{DASHBOARD} missing: optuna-dashboard is a dependency (pip install -e .)"
    folder = tmp_path_factory.mktemp("dashboard")
    journal = folder / "optuna.journal"
    _write_study(journal)
    port = _free_port()
    log = folder / "dashboard.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(DASHBOARD), str(journal), "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        yield base, _wait_for_study(base, server, log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_for_study(base: str, server: subprocess.Popen, log: Path, timeout: float = 60.0) -> int:
    """Poll `/api/studies` until the server lists the study; its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"optuna-dashboard exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            listed = _get(f"{base}/api/studies")["study_summaries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
            continue
        for study in listed:
            if study["study_name"] == NAME:
                assert study["directions"] == ["maximize"]
                return int(study["study_id"])
        time.sleep(0.2)
    pytest.fail(f"optuna-dashboard did not list {NAME} within {timeout:.0f} s: {log.read_text()[-2000:]}")


def test_the_dashboard_serves_the_journals_trials_and_best_value(dashboard):
    base, study_id = dashboard
    detail = _get(f"{base}/api/studies/{study_id}")
    assert detail["name"] == NAME
    trials = detail["trials"]
    assert [t["number"] for t in trials] == list(range(len(TRIALS)))
    assert [t["state"] for t in trials] == ["Complete", "Complete", "Pruned", "Fail", "Complete"]
    assert [p["param_external_value"] for t in trials for p in t["params"]] == [str(t[0]) for t in TRIALS]
    # the pruned trial is told without a value: it keeps its last report
    assert trials[2]["values"] == [0.2] and trials[2]["intermediate_values"] == [{"step": 0, "value": 0.2}]
    [best] = detail["best_trials"]
    assert (best["number"], best["values"]) == (BEST[0], [BEST[1]])


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run does)"
)
def test_the_dashboard_page_renders_the_study_in_chromium(dashboard, tmp_path):
    base, study_id = dashboard
    page = f"{base}/dashboard/studies/{study_id}"
    shot = tmp_path / "dashboard.png"
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
        # virtual time waits for the app's API requests, then runs 15 s of timers at once
        "--virtual-time-budget=15000",
    ]
    proc = subprocess.run(
        [*browser, f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120
    )
    assert shot.is_file(), f"no screenshot from Chromium: {proc.stderr[-1500:]}"
    data = shot.read_bytes()
    assert data.startswith(PNG)
    Image.open(io.BytesIO(data)).verify()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (1280, 900)
    # Chromium's page for a refused or missing URL has ~250 colours, the dashboard with charts ~1000
    assert len(image.getcolors(maxcolors=1 << 24)) > 500, "the dashboard page looks empty"
    # the app drew the study it fetched from the API, not only its empty frame
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert NAME in dom.stdout, f"study name not on the page: {dom.stderr[-1500:]}"

"""An offline W&B run stopped and resumed leaves folders that `wandb sync` turns into the uninterrupted
run: every logged row once, in order, across the folders in time order (`run/wandb_offline.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST
from wandb_records import read_records

from lightsuite.errors import RunInterrupted
from lightsuite.run.wandb_offline import HEADER, read_payloads, write_payloads
from lightsuite.train import train

# two epochs of four steps, every step logged
TINY = [*FAST, "trainer.deterministic=true", "callbacks.early_stopping=null", "trainer.log_every_n_steps=1"]
TINY += ["+trainer.num_sanity_val_steps=0", "trainer.max_epochs=2", "trainer.limit_train_batches=4"]
TINY += ["trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=wandb"]
HERE = Path(__file__).parent


def _stop_at(step: int, signum: int) -> list[str]:
    return [
        "+callbacks.signal_at._target_=signal_helpers.SignalAt",
        f"+callbacks.signal_at.step={step}",
        f"+callbacks.signal_at.signum={signum}",
    ]


def _offline_env(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_DIR", str(home))


def _segments(run: Path, count: int, exits: int, timeout: float = 60) -> list[list]:
    """Each offline folder's records, in the order `wandb sync` replays them (their start times),
    once there are `count` with `exits` finished among them: W&B's service, shared by the runs of
    this process, writes a finished run's file a little after `wandb.finish` returns."""
    deadline = time.monotonic() + timeout
    while True:
        files = [read_records(f) for f in run.glob("wandb/offline-run-*/run-*.wandb")]
        started = [records for records in files if _of(records, "run")]
        done = len(files) == len(started) == count and sum(bool(_of(r, "exit")) for r in files) >= exits
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done, f"{run}: {len(files)} W&B run files, {len(started)} started, of {count}"
    return sorted(started, key=lambda records: _of(records, "run")[0].start_time.ToNanoseconds())


def _of(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def _items(history) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in history.item}


def _rows(records: list) -> list[tuple[int, dict]]:
    """The history rows as (trainer/global_step, the row's own values; media as their kind)."""
    rows = []
    for history in _of(records, "history"):
        row = {
            key: value if isinstance(value, (int, float)) else type(value).__name__
            for key, value in _items(history).items()
            if not key.startswith("_")
        }
        rows.append((row["trainer/global_step"], row))
    return rows


def _synced_steps(segments: list[list]) -> list[int]:
    """The `_step` of each row as `wandb sync` numbers them: a row behind the running step (a later
    folder counts from 0 again) gets the running step (wandb-core's HistoryStepTracker)."""
    steps, running = [], 0
    for records in segments:
        for history in _of(records, "history"):
            step = max(_items(history)["_step"], running)
            steps.append(step)
            running = step + 1
    return steps


def _wait_for_service_of(pid: int, timeout: float = 60) -> None:
    """Wait until the W&B service of process `pid` (`wandb-core --pid <pid>`) has exited."""
    deadline = time.monotonic() + timeout
    mark = f"--pid\0{pid}\0".encode()
    while time.monotonic() < deadline:
        alive = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                alive = alive or (b"wandb-core" in (text := cmdline.read_bytes()) and mark in text)
            except OSError:
                continue
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"the W&B service of the killed process {pid} is still running")


def _assert_syncs_to(run: Path, reference: list, exits: int) -> None:
    segments = _segments(run, 2, exits)
    assert len({_of(records, "run")[0].run_id for records in segments}) == 1
    union = [row for records in segments for row in _rows(records)]
    # each logged row once, in step order across the folders: the uninterrupted run's rows
    assert [step for step, _ in union] == sorted(step for step, _ in union)
    assert union == _rows(reference)
    assert _synced_steps(segments) == list(range(len(union)))
    # the trimmed folder is still a whole run file: its run record first, its other records kept
    assert segments[0][1].WhichOneof("record_type") == "run"
    assert _of(segments[0], "output_raw"), "the killed segment's console output was dropped"


@pytest.fixture(scope="module")
def references() -> dict[str, list]:
    """The uninterrupted run's one offline folder, made once for the module."""
    return {}


def _reference(make_cfg, references: dict[str, list], root: Path) -> list:
    if "run" not in references:
        with pytest.MonkeyPatch.context() as mp:
            _offline_env(mp, root / "home")
            train(make_cfg("train", TINY, run_dir=root / "run"))
        (references["run"],) = _segments(root / "run", 1, exits=1)
    return references["run"]


def test_stopped_mid_epoch_then_resumed_syncs_each_step_once(
    make_cfg, references, tmp_path_factory, tmp_path, monkeypatch
):
    reference = _reference(make_cfg, references, tmp_path_factory.mktemp("reference"))
    _offline_env(monkeypatch, tmp_path / "home")
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted, match=r"interrupted in epoch 1 at step 6"):
        train(make_cfg("train", [*TINY, *_stop_at(6, 15)], run_dir=run))
    (stopped,) = _segments(run, 1, exits=1)
    # the stopped segment logged past its checkpoint (the next step's learning rate): a row the
    # resumed segment logs again
    assert max(step for step, _ in _rows(stopped)) > 5

    train(make_cfg("train", TINY, run_dir=run))
    # both finished: the stopped segment's exit record kept
    _assert_syncs_to(run, reference, exits=2)


def test_killed_after_an_epoch_then_resumed_syncs_each_step_once(
    make_cfg, references, tmp_path_factory, tmp_path, monkeypatch
):
    reference = _reference(make_cfg, references, tmp_path_factory.mktemp("reference"))
    _offline_env(monkeypatch, tmp_path / "home")
    run = tmp_path / "run"
    # SIGKILL two steps into the second epoch: nothing runs, the resume starts from epoch 0's checkpoint.
    # W&B's service dies with the run without writing what it holds: it writes the run file every
    # 15 s by default, here every 50 ms, so that the file holds the steps after the checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIGHTSUITE_ROOT": str(tmp_path)}
    env.pop("WANDB_SERVICE", None)  # its own W&B service, not this process's (which would outlive it)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    args = [*TINY, *_stop_at(6, 9), f"hydra.run.dir={run}", "+logger.wandb.settings._target_=wandb.Settings"]
    args.append("+logger.wandb.settings.x_transaction_log_flush_interval=0.05")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightsuite.train", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err[-3000:]
    _wait_for_service_of(proc.pid)
    (killed,) = _segments(run, 1, exits=0)
    assert max(step for step, _ in _rows(killed)) >= 5, "the kill came before the second epoch logged"

    train(make_cfg("train", TINY, run_dir=run))
    _assert_syncs_to(run, reference, exits=1)


def test_records_larger_than_a_block_are_written_across_blocks(tmp_path):
    from wandb.proto.wandb_internal_pb2 import Record

    records = []
    for size in (10, 40_000, 100_000, 32 * 1024 - 2 * 7 - len(HEADER), 5):
        record = Record()
        record.output_raw.line = "x" * size
        records.append(record.SerializeToString())
    path = tmp_path / "run-abc.wandb"
    write_payloads(path, records)
    assert read_payloads(path) == records
    assert [r.SerializeToString() for r in read_records(path)] == records  # the tests' own reader too
    # a record cut off by a kill, and what follows, is left out
    path.write_bytes(path.read_bytes()[:-3])
    assert read_payloads(path) == records[:-1]

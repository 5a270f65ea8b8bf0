"""The console scripts as a new user meets them: each mistake is one line, exit 1, nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST

from lightsuite.models.resnet import resnet56

BIN = Path(sys.executable).parent
# one thread: several of these processes may run beside the test runner
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def script(name: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run an installed console script (`lightsuite-train` ...) from `cwd`, outputs kept under it."""
    env = {**ENV, "LIGHTSUITE_ROOT": str(cwd)}
    return subprocess.run(
        [str(BIN / name), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def no_results(root: Path) -> bool:
    return not list(root.rglob("metrics.json"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A one-epoch run of the default experiment, trained once for every test here that needs one."""
    root = tmp_path_factory.mktemp("trained")
    proc = script(
        "lightsuite-train", *FAST, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={root}/run", cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


def test_wrong_typed_value_fails_before_any_work(tmp_path):
    proc = script("lightsuite-train", "task.optimizer.lr=abc", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert_one_line_error(proc, "task.optimizer.lr='abc' is not a float")
    # checked before the data was loaded or a Trainer built
    assert "GPU available" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "config.yaml").exists() and no_results(tmp_path)


def test_a_negative_learning_rate_is_one_line_naming_the_key(tmp_path):
    """torch refuses it only when fitting starts (the task builds the optimizer): no traceback then either."""
    run = f"hydra.run.dir={tmp_path}/run"
    proc = script("lightsuite-train", *FAST, "task.optimizer.lr=-0.1", run, cwd=tmp_path)
    assert_one_line_error(
        proc, "task.optimizer.lr=-0.1 was refused by SGD", "set task.optimizer.lr to a value"
    )
    assert no_results(tmp_path)


def test_eval_without_ckpt_path_shows_the_command(tmp_path):
    proc = script("lightsuite-eval", cwd=tmp_path)
    assert_one_line_error(proc, "ckpt_path is required: lightsuite-eval ckpt_path=")
    assert no_results(tmp_path)


def test_train_resume_from_missing_checkpoint(tmp_path):
    proc = script("lightsuite-train", f"ckpt_path={tmp_path}/nope.ckpt", cwd=tmp_path)
    assert_one_line_error(proc, f"ckpt_path={tmp_path}/nope.ckpt: no such file")
    assert no_results(tmp_path)


def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    tensors = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, tensors)
    assert_one_line_error(
        script("lightsuite-eval", f"ckpt_path={text}", cwd=tmp_path),
        "is not a checkpoint lightsuite can read",
    )
    assert_one_line_error(
        script("lightsuite-eval", f"ckpt_path={tensors}", cwd=tmp_path), "holds no Lightning state"
    )
    assert no_results(tmp_path)


def test_checkpoint_of_another_network_or_a_foreign_one(tmp_path, trained_run):
    last = trained_run / "checkpoints" / "last.ckpt"
    proc = script("lightsuite-train", "model=plain20", f"ckpt_path={last}", cwd=tmp_path)
    assert_one_line_error(proc, "holds a resnet20 network, but model= builds plain20")
    # a Lightning checkpoint that no lightsuite run wrote
    foreign = torch.load(last, weights_only=True)
    del foreign["lightsuite"]
    torch.save(foreign, tmp_path / "foreign.ckpt")
    proc = script("lightsuite-sample", f"ckpt_path={tmp_path / 'foreign.ckpt'}", cwd=tmp_path)
    assert_one_line_error(proc, "was not written by lightsuite-train")
    # a forecaster cannot be sampled from
    forecaster = Path(__file__).parent / "fixtures" / "checkpoints_e2e6019" / "forecast.ckpt"
    proc = script("lightsuite-sample", f"ckpt_path={forecaster}", cwd=tmp_path)
    assert_one_line_error(proc, "ForecastingTask, which does not sample")
    assert no_results(tmp_path)


def test_download_into_a_data_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    proc = script(
        "lightsuite-train",
        "data=mnist",
        "data.download=true",
        f"paths.data_dir={tmp_path}/blocker/data",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "paths.data_dir=", "cannot be created")
    assert no_results(tmp_path)


def test_dry_run_builds_and_counts_without_data(tmp_path):
    # CIFAR-10 is not on disk: a dry run must not need it
    proc = script(
        "lightsuite-train",
        "data=cifar10",
        "model=resnet56",
        "dry_run=true",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    params = sum(p.numel() for p in resnet56(input_shape=(3, 32, 32), num_classes=10).parameters())
    assert f"dry run ok: ClassificationTask around resnet56, {params:,} parameters" in proc.stdout
    assert f"run dir {tmp_path}/run" in proc.stdout
    assert no_results(tmp_path) and not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.slow
def test_sweep_with_one_bad_job_is_refused_whole(tmp_path):
    sweep = tmp_path / "sweep"
    proc = script(
        "lightsuite-train",
        "-m",
        "data.batch_size=32,16,8,abc",
        "dry_run=true",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "job 3 of 4 (data.batch_size=abc", "is not an integer", "no job was started")
    assert not sweep.exists()
    # the same sweep without the bad value: every job is checked and dry-run
    proc = script(
        "lightsuite-train",
        "-m",
        "model=resnet20,plain20",
        "dry_run=true",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("dry run ok") == 2 and no_results(tmp_path)


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_checkpoint_and_says_how(tmp_path):
    run = tmp_path / "run"
    args = [*FAST, "trainer.max_epochs=50", f"hydra.run.dir={run}"]
    env = {**ENV, "LIGHTSUITE_ROOT": str(tmp_path)}
    proc = subprocess.Popen(
        [str(BIN / "lightsuite-train"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no epoch finished in time"
    time.sleep(1.0)  # into the next epoch
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    line = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "interrupted in epoch" in line[0] and f"ckpt_path={last}" in line[0], stderr[
        -2000:
    ]
    assert not (run / "metrics.json").exists()
    # the checkpoint it names resumes
    epoch = torch.load(last, weights_only=True)["epoch"]
    resumed = script(
        "lightsuite-train", *FAST, f"trainer.max_epochs={epoch + 2}", "test=false", f"ckpt_path={last}",
        f"hydra.run.dir={tmp_path}/resumed", cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "resumed" / "metrics.json").exists()


def test_an_unreadable_image_is_one_line(make_cfg, tmp_path, capsys):
    from lightsuite.errors import exit_on_user_error
    from lightsuite.train import train

    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        (tmp_path / "images" / cls / "broken.png").write_text("not a png")
    cfg = make_cfg(
        "train", [*FAST, "data=image_folder", f"data.path={tmp_path / 'images'}", "data.num_workers=0"]
    )
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "broken.png is not an image that can be read" in err[-1]
    assert no_results(tmp_path)

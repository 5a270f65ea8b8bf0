"""The parts of SLURM support that need no cluster: the job side of a SLURM task, refusals, resumed logs."""

from __future__ import annotations

import csv
import pickle

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, run_cli
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger

from lightsuite.errors import ConfigError, DivergedError, UserExit, exit_on_user_error
from lightsuite.launch import sweeps
from lightsuite.launch.slurm_submit import _executor, check_sweep
from lightsuite.launch.slurm_task import task_plugins
from lightsuite.launch.sweeps import _rank_zero
from lightsuite.run.callbacks import ThrottledRichProgressBar
from lightsuite.run.resume import keep_logged_epochs

SLURM_TASK = {
    "SUBMITIT_EXECUTOR": "slurm",
    "SLURM_JOB_ID": "42",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NAME": "train",
    "SLURM_NODELIST": "vm",
    "SLURM_CPUS_PER_TASK": "1",
}


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_slurm_task_uses_slurms_ranks_its_cpus_and_no_lightning_requeue(monkeypatch, threads):
    for key, value in SLURM_TASK.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(2)
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    assert task_plugins() == [], "a plain sbatch script or srun shell keeps Lightning's own SLURM handling"
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    (plugin,) = task_plugins()
    assert isinstance(plugin, SLURMEnvironment) and not plugin.auto_requeue
    assert plugin.global_rank() == 1 and plugin.world_size() == 2
    assert torch.get_num_threads() == 1  # its --cpus-per-task, not the node's cores / tasks


def test_only_rank_zero_of_a_slurm_job_reports(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not _rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert _rank_zero()


def test_no_slurm_here_names_the_local_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    with pytest.raises(ConfigError, match=r"found no SLURM here .*slurm-local\.sh up"):
        _executor({"submitit_folder": str(tmp_path / "%j"), "max_num_timeout": 0})


def test_the_progress_bar_of_a_rank_other_than_zero_skips_evaluation_batches():
    # rank 1's bar is disabled and never starts an evaluation loader: it must not ask for its total
    bar = ThrottledRichProgressBar()
    bar.disable()
    trainer, module = pl.Trainer(logger=False), pl.LightningModule()
    bar.on_validation_batch_end(trainer, module, None, None, 0)
    bar.on_test_batch_end(trainer, module, None, None, 0)


def test_a_resumed_csv_log_keeps_the_epochs_its_checkpoint_holds(tmp_path):
    logger = CSVLogger(tmp_path, name="csv", version="")
    path = tmp_path / "csv" / "metrics.csv"
    path.parent.mkdir(parents=True)
    rows = [
        {"epoch": "", "step": "9", "lr": "0.1", "val/acc": ""},
        {"epoch": "0", "step": "9", "lr": "", "val/acc": "0.5"},
        {"epoch": "", "step": "19", "lr": "0.05", "val/acc": ""},
        {"epoch": "1", "step": "19", "lr": "", "val/acc": "0.6"},
        # what the stopped epoch 2 logged before the stop, and the next epoch's learning rate
        {"epoch": "", "step": "29", "lr": "0.01", "val/acc": ""},
        {"epoch": "2", "step": "25", "lr": "", "val/acc": ""},
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    keep_logged_epochs([logger], epoch=1)
    logger.log_metrics({"val/acc": 0.7, "epoch": 2}, step=29)
    logger.save()

    got = list(csv.DictReader(path.open(newline="")))
    assert [(r["epoch"], r["step"], r["val/acc"]) for r in got] == [
        ("", "9", ""),
        ("0", "9", "0.5"),
        ("", "19", ""),
        ("1", "19", "0.6"),
        ("2", "29", "0.7"),
    ]


@pytest.mark.parametrize(
    ("raised", "recorded"),
    [
        (PermissionError(13, "Permission denied", "/data/cifar"), "cannot use /data/cifar"),
        (DivergedError("train/loss became nan in epoch 0"), "train/loss became nan"),
        (ConfigError("task.optimizer.lr='abc' is not a float"), "is not a float"),
    ],
)
def test_a_jobs_user_error_fails_that_job_and_the_sweep_goes_on(monkeypatch, raised, recorded):
    # a file error used to end the whole sweep: only errors raised as user errors were recorded
    monkeypatch.setattr(sweeps, "in_multirun", lambda: True)

    def main(cfg):
        with exit_on_user_error():
            raise raised

    assert sweeps.keep_sweeping(main)(OmegaConf.create({})) is None
    assert recorded in sweeps._failure["error"]


def test_ctrl_c_in_a_job_ends_the_sweep_with_status_130(monkeypatch):
    monkeypatch.setattr(sweeps, "in_multirun", lambda: True)

    def main(cfg):
        with exit_on_user_error():
            raise KeyboardInterrupt

    with pytest.raises(UserExit) as info:
        sweeps.keep_sweeping(main)(OmegaConf.create({}))
    assert info.value.code == 130
    assert pickle.loads(pickle.dumps(info.value)).code == 130


def test_a_slurm_sweep_over_its_resources_is_refused_before_submitting(tmp_path):
    proc = run_cli(
        "lightsuite.train",
        "-m",
        "hydra/launcher=slurm",
        *FAST,
        "trainer=ddp_cpu",
        "trainer.devices=1,2",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]], proc.stderr
    assert proc.stderr.startswith("error: trainer.devices differs between the jobs")
    assert not list(tmp_path.rglob(".submitit/*")), "something was submitted"


def test_a_time_limit_signal_due_at_once_is_refused():
    params = {"timeout_min": 1, "signal_delay_s": 120}
    with pytest.raises(ConfigError, match="signal_delay_s=120 is not shorter than timeout_min"):
        check_sweep(params, [["seed=1"], ["seed=2"]])
    check_sweep({**params, "timeout_min": 10}, [["seed=1"], ["seed=2"]])

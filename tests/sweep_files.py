"""A synthetic multirun on disk, written by the same writers a real job uses; and the two plug-ins
a real in-process multirun is watched and steered with (an objective logged on cue, summary snapshots).

Hydra's files (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), the resolved `config.yaml`,
the CSV logger's `csv/metrics.csv` (written by Lightning's own `CSVLogger`), `metrics.json`
(lightsuite's `save_metrics`) and, for a failed job, the error as `exit_on_user_error` records it in
Hydra's `train.log`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger

from lightsuite.errors import DivergedError, exit_on_user_error
from lightsuite.run.files import save_metrics

HYDRA_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
STEPS_PER_EPOCH = 5


def base_config(lr: float, seed: int, optimized: str = "val/acc_best") -> dict:
    return {
        "task_name": "train",
        "seed": seed,
        "optimized_metric": optimized,
        "model": {"_target_": "lightsuite.models.resnet.resnet20"},
        "task": {
            "_target_": "lightsuite.tasks.classification.ClassificationTask",
            "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": lr},
        },
        "callbacks": {"model_checkpoint": {"monitor": "val/acc", "mode": "max"}},
    }


# what a classification run writes into its run.json
CLASSIFICATION_RUN = {
    "task": "lightsuite.tasks.classification.ClassificationTask",
    "report_metrics": ["val/acc", "train/loss"],
}


def write_job(
    path: Path,
    overrides: list[str],
    config: dict,
    val_acc: list[float] | None,
    train_loss: list[float],
    final: dict[str, float] | None,
    error: str | Exception | None = None,
    run_file: dict | None = CLASSIFICATION_RUN,
) -> Path:
    """One run dir: val/acc once per epoch, train/loss every step; `final=None` leaves no metrics.json,
    `run_file=None` no run.json (a run dir from before it)."""
    hydra_dir = path / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {"hydra": {"runtime": {"choices": {"model": "resnet20"}}, "sweeper": {"max_batch_size": None}}}
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    if run_file is not None:
        (path / "run.json").write_text(json.dumps(run_file))
    logger = CSVLogger(save_dir=path, name="csv", version="")
    for step, loss in enumerate(train_loss):
        logger.log_metrics({"train/loss": loss, "epoch": step // STEPS_PER_EPOCH}, step=step)
    for epoch, acc in enumerate(val_acc or []):
        logger.log_metrics({"val/acc": acc, "epoch": epoch}, step=(epoch + 1) * STEPS_PER_EPOCH - 1)
    logger.save()
    if final is not None:
        save_metrics(final, path)
    if error is not None:
        _fail_like_a_job(path / "train.log", error)
    return path


def _fail_like_a_job(log_file: Path, error: str | Exception) -> None:
    """Raise inside the entry points' handler with Hydra's job log file attached.

    A string is a user error (one line, exit 1); an exception is a crash (its traceback re-raised).
    """
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(HYDRA_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("lightsuite.train").warning("starting")
        exc = DivergedError(error) if isinstance(error, str) else error
        with pytest.raises(SystemExit if isinstance(error, str) else type(error)), exit_on_user_error():
            raise exc
    finally:
        root.removeHandler(handler)
        handler.close()


def synthetic_sweep(root: Path) -> Path:
    """Four jobs: lr=0.1 with seeds 1 and 2, lr=0.001 without val/acc, lr=0.01 failed in epoch 2."""
    sweep = root / "sweep"
    loss = [2.0 - 0.1 * i for i in range(3 * STEPS_PER_EPOCH)]
    write_job(
        sweep / "0",
        ["task.optimizer.lr=0.1", "seed=1"],
        base_config(0.1, 1),
        [0.5, 0.7, 0.8],
        loss,
        {"val/acc": 0.8, "val/acc_best": 0.8, "train/loss": loss[-1], "test/acc": 0.78},
    )
    write_job(
        sweep / "1",
        ["task.optimizer.lr=0.1", "seed=2"],
        base_config(0.1, 2),
        [0.6, 0.8, 0.9],
        [x + 0.2 for x in loss],
        {"val/acc": 0.9, "val/acc_best": 0.9, "train/loss": loss[-1] + 0.2, "test/acc": 0.88},
    )
    write_job(
        sweep / "2",
        ["task.optimizer.lr=0.001", "seed=1"],
        base_config(0.001, 1),
        None,
        [x + 0.5 for x in loss],
        {"train/loss": loss[-1] + 0.5},
    )
    write_job(
        sweep / "3",
        ["task.optimizer.lr=0.01", "seed=1"],
        base_config(0.01, 1),
        [0.4],
        loss[: STEPS_PER_EPOCH + 2],
        None,
        error="train/loss is nan at step 7: lower task.optimizer.lr",
    )
    return sweep


class LoggedObjective(pl.Callback):
    """Logs `values[job]` as `name` at every validation end (nothing for null): a job's objective on cue.

    `job` is the job's number (`${hydra:job.num}`), so each job of a sweep, an Optuna trial included,
    reports the value chosen for it, NaN and infinities too, through the real logging path.
    """

    def __init__(self, name: str, values: list[float | None], job: int) -> None:
        self.name, self.value = name, values[job]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.value is not None:
            pl_module.log(self.name, float(self.value))


class SummarySnapshots(Callback):
    """Hydra callback: at each job's start, what `sweep_summary.json` under `root` says at that moment.

    Found by a glob of its own, not by the sweep dir the code resolves; kept per job number in
    `SummarySnapshots.seen` (the sweep runs in the test's process).
    """

    seen: dict[int, dict[str, Any] | None] = {}

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        found = sorted(self.root.glob("**/sweep_summary.json"))
        assert len(found) <= 1, found
        self.seen[int(config.hydra.job.num)] = json.loads(found[0].read_text()) if found else None


@dataclass
class PlannedTrial:
    """One trial of a synthetic Optuna search: its sampled values, how it ends, its val/acc per epoch.

    `state` is `complete`, `pruned` (after the last epoch given), `failed` (a diverged loss) or
    `running` (its job still training: no status file, not told to the study).
    """

    params: dict[str, float]
    state: str
    val_acc: list[float]


def optuna_sweep(root: Path, trials: list[PlannedTrial], name: str = "search") -> Path:
    """A sweep dir as the suite's Optuna search leaves it, maximizing val/acc_best.

    The study is Optuna's own, in `<sweep>/optuna.journal`, each trial asked for with its values
    enqueued and told how it ended; each trial reports its running best val/acc every epoch (what
    a job reports to its pruner). Each job's run dir, `job_status.json` and the sweep's
    `sweep_summary.json` come from the suite's writers (`write_job`, `record_job_status`,
    `write_summary`).
    """
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from lightsuite.launch.sweeps import record_job_status, write_summary

    space = {
        "task.optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "task.optimizer.weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
    }
    sweep = root / "sweep"
    sweep.mkdir(parents=True)
    journal = sweep / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for number, plan in enumerate(trials):
        study.enqueue_trial(plan.params)
        trial = study.ask({key: space[key] for key in plan.params})
        assert (trial.number, trial.params) == (number, plan.params)
        bests = [max(plan.val_acc[: i + 1]) for i in range(len(plan.val_acc))]
        for epoch, best in enumerate(bests):
            trial.report(best, epoch)
        overrides = [f"{key}={value}" for key, value in plan.params.items()]
        loss = [2.0 - 0.1 * i for i in range(len(plan.val_acc) * STEPS_PER_EPOCH)]
        fit = {"val/acc": plan.val_acc[-1], "val/acc_best": bests[-1], "train/loss": loss[-1]}
        # a pruned job's metrics.json holds the fit's metrics so far and no test metrics
        final = {"complete": {**fit, "test/acc": bests[-1] - 0.02}, "pruned": fit}.get(plan.state)
        error = "train/loss is nan at step 7: lower task.optimizer.lr" if plan.state == "failed" else None
        cfg = base_config(plan.params["task.optimizer.lr"], 1)
        path = write_job(sweep / str(number), overrides, cfg, plan.val_acc, loss, final, error)
        if plan.state == "running":
            continue
        status = {"complete": "completed", "pruned": "pruned", "failed": "failed"}[plan.state]
        record = {
            "job": number,
            "overrides": overrides,
            "status": status,
            "objective": bests[-1] if final else None,
            "run_dir": str(path),
            "error": error,
            "trial": number,
            "params": plan.params,
        }
        if plan.state == "pruned":
            record["pruned_at_epoch"] = len(plan.val_acc) - 1
        record_job_status(path, record)
        if plan.state == "complete":
            study.tell(trial, bests[-1])
        else:
            study.tell(trial, state=TrialState.PRUNED if plan.state == "pruned" else TrialState.FAIL)
    write_summary(sweep, "val/acc_best", "maximize", study={"name": name, "storage": str(journal)})
    return sweep


# the user's own presets the sweep tests compose (hparams_search=flaky, hopeless, odd_objectives)
USER_CONF = Path(__file__).parent / "launch" / "user_conf"


@pytest.fixture
def multirun(tmp_path, monkeypatch):
    """`multirun(*args)`: `lightsuite-train args...` run by Hydra in this process, under tmp_path.

    The default paths (`LIGHTSUITE_ROOT`, so the default sweep dir is tmp_path/outputs/multirun/...);
    returns the warnings raised meanwhile. Hydra's logging, its global config and the job's
    HydraConfig are put back afterwards, so later tests see no multirun.
    """
    import sys
    import warnings

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from lightsuite import train as train_module

    monkeypatch.setenv("LIGHTSUITE_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    SummarySnapshots.seen.clear()

    def run(*args: str) -> list[warnings.WarningMessage]:
        monkeypatch.setattr(sys, "argv", ["lightsuite-train", f"--config-dir={USER_CONF}", *args])
        GlobalHydra.instance().clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_module.main()
        return caught

    yield run
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)

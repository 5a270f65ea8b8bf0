"""The settings every job shares, once above the tables: what a page needs to be read on its own."""

from __future__ import annotations

import re
from pathlib import Path

from sweep_files import base_config, write_job

from lightsuite.reporting.page import make_report, write_report
from lightsuite.reporting.runs import find_jobs
from lightsuite.reporting.shared import shared_settings


def _config(lr: float, seed: int, batch_size: int) -> dict:
    cfg = base_config(lr, seed)
    cfg["data"] = {
        "_target_": "lightsuite.data.digits.DigitsDataModule",
        "batch_size": batch_size,
        "data_dir": "/somewhere/data",
        "classes": None,
    }
    cfg["trainer"] = {"max_epochs": 15, "default_root_dir": "/runs/x", "precision": "32-true"}
    cfg["task"]["optimizer"]["momentum"] = 0.9
    cfg["logger"] = {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": "/runs/x"}}
    cfg["paths"] = {"output_dir": "/runs/x"}
    return cfg


def _sweep(root: Path) -> Path:
    """Two learning rates by two seeds; the batch size differs in one job without being an override."""
    sweep = root / "sweep"
    for i, (lr, seed) in enumerate([(0.1, 1), (0.1, 2), (0.01, 1), (0.01, 2)]):
        cfg = _config(lr, seed, 64 if i < 3 else 128)
        write_job(
            sweep / str(i), [f"task.optimizer.lr={lr}", f"seed={seed}"], cfg, [0.5], [1.0], {"val/acc": 0.5}
        )
    return sweep


def test_only_what_every_job_shares_is_listed_by_group(tmp_path):
    jobs = find_jobs([_sweep(tmp_path)])
    shared = shared_settings(jobs, ["task.optimizer.lr", "seed"])
    assert list(shared) == ["model", "task", "trainer", "callbacks", "run"]
    assert shared["model"] == [("model", "resnet20")]  # the group's choice, not its `_target_`
    assert shared["task"] == [("task.optimizer.momentum", "0.9")]  # the swept lr is the tables'
    assert shared["trainer"] == [("trainer.max_epochs", "15"), ("trainer.precision", "32-true")]
    assert shared["callbacks"] == [
        ("callbacks.model_checkpoint.monitor", "val/acc"),
        ("callbacks.model_checkpoint.mode", "max"),
    ]
    assert shared["run"] == [("optimized_metric", "val/acc_best")]
    # data: the batch size differs, the data dir is a path, `classes` is off: nothing shared to say
    assert "data" not in shared
    listed = {key for pairs in shared.values() for key, _ in pairs}
    assert not {k for k in listed if k.startswith(("logger", "paths", "hydra"))}


def test_the_page_shows_them_above_the_tables(tmp_path):
    sweep = _sweep(tmp_path)
    page = (write_report(make_report([str(sweep)]), sweep / "report") / "index.html").read_text()
    assert page.index("<h2>Shared settings</h2>") < page.index("<table id=jobs>")
    items = re.findall(r"<li><b>(\w+)</b>: (.*?)</li>", page[page.index("<ul id=shared>") :])
    assert items[0][0] == "model" and "<code>model=resnet20</code>" in items[0][1]
    assert "<code>trainer.max_epochs=15</code>" in dict(items)["trainer"]
    assert "task.optimizer.lr=" not in page[: page.index("<table id=jobs>")]

"""`lightsuite-eval ckpt_path=... attack=fgsm|pgd`: accuracy per eps in metrics.json, a table, a plot."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import FAST, RESNET8_DIGITS
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from PIL import Image

from lightsuite import CONFIG_DIR
from lightsuite.errors import ConfigError, exit_on_user_error
from lightsuite.eval import evaluate
from lightsuite.run.attacks import PGDStudy
from lightsuite.run.build import build
from lightsuite.train import train

TINY = RESNET8_DIGITS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("attack_train")
    overrides = [*FAST, *TINY, "trainer.limit_val_batches=1", "test=false"]
    train(compose_in(run, "train", [*overrides, "+trainer.num_sanity_val_steps=0"]))
    return run / "checkpoints" / "last.ckpt"


def compose_in(run: Path, name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(run), str(run / "logs")
    GlobalHydra.instance().clear()
    return cfg


def test_fgsm_study_reports_accuracy_per_eps_with_table_and_plot(checkpoint, tmp_path):
    overrides = [f"ckpt_path={checkpoint}", "attack=fgsm", "attack.eps=[0,0.05,0.2]"]
    metrics = evaluate(compose_in(tmp_path, "eval", overrides))
    accs = [metrics[f"attack/fgsm_acc_eps{eps}"] for eps in ("0", "0.05", "0.2")]
    # eps 0 is the plain test, image for image (360 test images: compare counts, not float32 rounding)
    assert round(accs[0] * 360) == round(metrics["test/acc"] * 360)
    assert accs[0] > accs[1] > accs[2]
    assert json.loads((tmp_path / "metrics.json").read_text())["attack/fgsm_acc_eps0.2"] == accs[2]
    rows = list(csv.DictReader((tmp_path / "attack_fgsm.csv").open()))
    assert [r["eps"] for r in rows] == ["0", "0.05", "0.2"]
    assert [float(r["acc"]) for r in rows] == pytest.approx(accs, abs=1e-4)
    assert (tmp_path / "attack_fgsm.md").read_text().count("\n") == 5  # header, rule, three rows
    with Image.open(tmp_path / "attack_fgsm.png") as plot:
        assert plot.format == "PNG" and plot.width > 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["attack=pgd", "attack.steps=0"], "attack.steps=0 must be at least 1"),
        (["attack=fgsm", "attack.eps=[0,-0.1]"], "attack.eps=-0.1 must be 0 or more"),
        (["attack=pgd", "attack.step_size=-1"], "attack.step_size=-1"),
        (["attack=fgsm", "+attack.steps=3"], "FGSMStudy has no argument 'steps'"),
    ],
)
def test_bad_attack_settings_stop_before_any_work(checkpoint, tmp_path, overrides, message):
    err = io.StringIO()
    # as the entry point runs it: one line on stderr, exit status 1
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        evaluate(compose_in(tmp_path, "eval", [f"ckpt_path={checkpoint}", *overrides]))
    assert exit_info.value.code == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err.getvalue()
    assert not (tmp_path / "config.yaml").exists()  # refused before the run was prepared


def test_a_study_refuses_a_task_that_is_not_a_classifier(make_cfg):
    study = build(make_cfg("eval", ["ckpt_path=x", "attack=pgd"]).attack, "attack")
    assert isinstance(study, PGDStudy) and study.eps == [0, 0.02, 0.05, 0.1] and study.steps == 10
    with pytest.raises(ConfigError, match="attack=pgd attacks image classifiers"):
        study.check(pl.LightningModule())

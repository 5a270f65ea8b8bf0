"""`train(cfg)` end to end on the shipped digits: outputs, accuracy, resume, errors, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAST, ONE_TINY_EPOCH, run_cli

from lightsuite import CONFIG_DIR
from lightsuite.errors import ConfigError, DivergedError
from lightsuite.run.checkpoints import load_checkpoint
from lightsuite.train import train

# image classifiers; GAN and recurrent networks have their own tasks and tests
MODELS = sorted(
    p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml") if "models.resnet" in p.read_text()
)
SHORT = [*FAST, "trainer.max_epochs=2"]


@pytest.mark.slow
def test_default_experiment_reaches_97_percent(make_cfg, tmp_path):
    """The run `make train` starts: digits + ResNet-20 on the CPU."""
    metrics = train(make_cfg("train", FAST))
    run = tmp_path / "run"
    assert metrics["test/acc"] >= 0.97
    assert json.loads((run / "metrics.json").read_text()) == pytest.approx(metrics)
    for key in ("test/acc", "test/acc_top5", "test/loss", "val/acc", "val/acc_best", "train/loss"):
        assert key in metrics
    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2, ckpts
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["_target_"] == "lightsuite.models.resnet.resnet20"
    assert saved["paths"]["output_dir"] == str(run)
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert any(r.get("val/acc") for r in rows) and any(r.get("test/acc") for r in rows)


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_of_each_model_on_digits(make_cfg, model):
    metrics = train(make_cfg("train", [*FAST, f"model={model}", "debug=fdr"]))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_eval_reports_the_test_accuracy_of_training(make_cfg, tmp_path):
    from lightsuite.eval import evaluate

    trained = train(make_cfg("train", SHORT))
    best = next(p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name != "last.ckpt")
    eval_dir = tmp_path / "eval"
    # deliberately the wrong model on the command line: the run's own config.yaml must win
    tested = evaluate(make_cfg("eval", ["model=plain20", f"ckpt_path={best}"], run_dir=eval_dir))
    assert tested["test/acc"] == trained["test/acc"]
    assert tested["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-6)
    assert json.loads((eval_dir / "metrics.json").read_text())["test/acc"] == trained["test/acc"]


def test_eval_missing_checkpoint_is_a_config_error(make_cfg, tmp_path):
    from lightsuite.eval import evaluate

    with pytest.raises(ConfigError, match="no such file"):
        evaluate(make_cfg("eval", [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))


def test_resume_continues_from_last_checkpoint(make_cfg, tmp_path):
    # a constant lr: a finished cosine cannot be trained on (tests/run/test_resume.py)
    steady = [*FAST, "task/scheduler=constant", "test=false"]
    before = train(make_cfg("train", [*steady, "trainer.max_epochs=1"], run_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=False)
    steps_per_epoch = first["global_step"]
    assert first["epoch"] == 0 and steps_per_epoch > 0
    # the best validation accuracy so far travels with the checkpoint
    assert first["state_dict"]["val_acc_best.max_value"].item() == pytest.approx(before["val/acc_best"])

    resumed_cfg = make_cfg("train", [*steady, "trainer.max_epochs=2", f"ckpt_path={last}"])
    train(resumed_cfg)
    second = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 2 * steps_per_epoch
    # the scheduler kept counting from where it stopped rather than restarting
    assert second["lr_schedulers"][0]["last_epoch"] == 2 * steps_per_epoch
    # momentum buffers came back and moved on
    assert second["optimizer_states"][0]["state"], "optimizer state was not restored"
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    epochs = {int(float(r["epoch"])) for r in rows if r.get("epoch")}
    assert epochs == {1}, f"resumed run logged epochs {epochs}"


def test_same_seed_same_result(make_cfg, tmp_path):
    overrides = [*FAST, "trainer.max_epochs=1", "trainer.deterministic=true", "test=false"]
    a = train(make_cfg("train", overrides, run_dir=tmp_path / "a"))
    b = train(make_cfg("train", overrides, run_dir=tmp_path / "b"))
    c = train(make_cfg("train", [*overrides, "seed=7"], run_dir=tmp_path / "c"))
    assert a["train/loss_epoch"] == b["train/loss_epoch"]
    assert a["train/loss_epoch"] != c["train/loss_epoch"]


def test_no_logger_with_the_default_callbacks_trains_and_tests(make_cfg, tmp_path):
    """logger=none: the default lr monitor has nowhere to log and is left out, not a traceback."""
    metrics = train(make_cfg("train", [*FAST, *ONE_TINY_EPOCH, "logger=none"]))
    assert 0 <= metrics["test/acc"] <= 1 and (tmp_path / "run" / "metrics.json").is_file()


def test_diverging_loss_stops_with_a_clear_error_and_no_metrics(make_cfg, tmp_path):
    cfg = make_cfg("train", [*FAST, "trainer.max_epochs=2", "task.optimizer.lr=1e12"])
    with pytest.raises(DivergedError, match=r"train/loss became (nan|inf).*task\.optimizer\.lr"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unknown_optimized_metric_lists_logged_ones(make_cfg):
    from lightsuite.run.files import metric_value

    with pytest.raises(ConfigError, match="val/acc_best"):
        metric_value({"val/acc_best": 1.0}, "val/accuracy")


def test_cli_single_run(tmp_path):
    run = tmp_path / "cli"
    proc = run_cli(
        "lightsuite.train", "debug=fdr", f"hydra.run.dir={run}", "optimized_metric=test/acc", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "├── data" in proc.stdout and "lightsuite.data.digits.DigitsDataModule" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/acc" in metrics
    assert (run / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()


def test_cli_bad_value_is_one_line_error(tmp_path):
    run = tmp_path / "cli"
    proc = run_cli("lightsuite.train", "data.batch_size=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "data.batch_size=0" in last
    assert not (run / "metrics.json").exists()


def test_cli_unknown_choice_lists_valid_ones(tmp_path):
    proc = run_cli("lightsuite.train", "trainer=tpu", f"hydra.run.dir={tmp_path / 'x'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "ddp" in proc.stderr and "gpu" in proc.stderr


def test_test_stage_uses_the_best_checkpoint_not_the_last(make_cfg, tmp_path):
    """Validation accuracy peaks in epoch 0 here: after its 20 steps the lr jumps x1000 and wrecks the net."""
    from lightsuite.eval import evaluate

    wrecked_after_epoch_0 = [
        *SHORT,
        "task/scheduler=multistep",
        "task.scheduler.milestones=[20]",
        "task.scheduler.gamma=1000",
        "trainer.gradient_clip_val=1.0",  # worse, but finite
    ]
    metrics = train(make_cfg("train", wrecked_after_epoch_0))
    ckpts = tmp_path / "run" / "checkpoints"
    best_path = next(p for p in ckpts.iterdir() if p.name != "last.ckpt")
    best, last = load_checkpoint(best_path), load_checkpoint(ckpts / "last.ckpt")
    # the premise: the best epoch is not the last one, and it validated better
    assert (best["epoch"], last["epoch"]) == (0, 1)
    assert metrics["val/acc"] < metrics["val/acc_best"] - 0.05  # 0.09 against 0.19 on one thread
    assert best["state_dict"]["val_acc_best.max_value"].item() == pytest.approx(metrics["val/acc_best"])

    def test_metrics(ckpt: Path) -> dict[str, float]:
        return evaluate(make_cfg("eval", [f"ckpt_path={ckpt}"], run_dir=tmp_path / f"eval_{ckpt.stem}"))

    of_best, of_last = test_metrics(best_path), test_metrics(ckpts / "last.ckpt")
    assert of_best["test/loss"] != pytest.approx(of_last["test/loss"], rel=1e-3)
    # what the run reports as its test result is the best checkpoint's
    assert metrics["test/acc"] == of_best["test/acc"]
    assert metrics["test/loss"] == pytest.approx(of_best["test/loss"], rel=1e-6)

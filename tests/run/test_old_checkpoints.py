"""Checkpoints written before the layout change still test, sample and resume with today's code.

They name their task by the class paths of that time (`lightsuite.tasks.gan.GANTask`,
`lightsuite.tasks.forecasting.ForecastingTask`) and carry that time's config; the expected values
are what that code computed from them (tests/fixtures/checkpoints_e2e6019/README.md says how).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST

from lightsuite.eval import evaluate
from lightsuite.run.checkpoints import RECORD_KEY
from lightsuite.sample import sample
from lightsuite.train import train

OLD = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoints_e2e6019"
# the overrides each fixture was trained with (its README)
TRAINED_WITH = {
    "gan": [
        "experiment=gaussians_gan",
        "model.hidden_size=16",
        "model.num_layers=2",
        "data.num_train=4096",
        "data.batch_size=512",
        "task.rounds_per_step=2",
        "task.num_eval_samples=200",
        "task.eval_batch_size=200",
        "task.sample_every_n_epochs=0",
    ],
    "forecast": ["experiment=sunspots_lstm", "model.hidden_size=8"],
    "chars": [
        "experiment=chars_lstm",
        "model.hidden_size=16",
        "model.num_layers=1",
        "model.embedding_dim=8",
        "data.max_chars=20000",
        "data.seq_len=32",
        "trainer.val_check_interval=1.0",
    ],
}
TASKS = {
    "gan": "lightsuite.tasks.gan.task.GANTask",
    "forecast": "lightsuite.tasks.forecasting.task.ForecastingTask",
    "chars": "lightsuite.tasks.char_lm.CharLMTask",
}


def old_record(name: str) -> dict:
    return torch.load(OLD / f"{name}.ckpt", map_location="cpu", weights_only=True)[RECORD_KEY]


def test_the_fixtures_name_the_task_paths_of_before_the_move():
    assert old_record("gan")["task"] == "lightsuite.tasks.gan.GANTask"
    assert old_record("forecast")["task"] == "lightsuite.tasks.forecasting.ForecastingTask"
    assert old_record("gan")["config"]["task"]["_target_"] == "lightsuite.tasks.gan.GANTask"


@pytest.mark.parametrize("name", ["gan", "forecast", "chars"])
def test_an_old_checkpoint_tests_to_what_it_tested_to_then(make_cfg, name: str):
    cfg = make_cfg("eval", [f"ckpt_path={OLD / f'{name}.ckpt'}"])
    metrics = evaluate(cfg)
    then = json.loads((OLD / f"{name}_test_metrics.json").read_text())
    assert metrics == pytest.approx(then, rel=1e-5, abs=1e-6)
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text()) == pytest.approx(then)


def test_an_old_gan_samples_what_it_sampled_then(make_cfg, tmp_path: Path):
    out = tmp_path / "samples.npy"
    cfg = make_cfg("sample", [f"ckpt_path={OLD / 'gan.ckpt'}", "num_samples=16", f"output={out}", "seed=0"])
    sample(cfg)
    # the same noise through the same weights; float32 kernels differ by an ulp or two between CPUs
    # (seen: 3e-8), a wrong seed or weights by far more
    np.testing.assert_allclose(np.load(out), np.load(OLD / "gan_samples_seed0.npy"), rtol=1e-5, atol=1e-6)


def test_an_old_language_model_writes_what_it_wrote_then(make_cfg, capsys):
    cfg = make_cfg("sample", [f"ckpt_path={OLD / 'chars.ckpt'}", "prompt=def ", "length=40", "seed=0"])
    sample(cfg)
    assert capsys.readouterr().out == (OLD / "chars_sample_seed0.txt").read_text()


@pytest.mark.parametrize("name", ["gan", "forecast", "chars"])
def test_an_old_checkpoint_resumes_for_one_more_epoch(make_cfg, name: str):
    """Asked for one epoch more than it was trained for, it continues there and saves today's task path."""
    then = torch.load(OLD / f"{name}.ckpt", map_location="cpu", weights_only=True)
    epochs = then["epoch"] + 2  # epochs count from 0
    cfg = make_cfg(
        "train",
        [*TRAINED_WITH[name], *FAST, f"ckpt_path={OLD / f'{name}.ckpt'}", f"trainer.max_epochs={epochs}"],
    )
    metrics = train(cfg)
    last = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert last["epoch"] == then["epoch"] + 1
    assert last["global_step"] > then["global_step"]
    assert last[RECORD_KEY]["task"] == TASKS[name]  # today's path, where the class lives
    assert any(key.startswith("test/") for key in metrics)

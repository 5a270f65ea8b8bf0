"""The sequence family's experiments end to end: fast_dev_run of each, sampling, one-line CLI errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FAST

from lightsuite import CONFIG_DIR
from lightsuite.errors import exit_on_user_error
from lightsuite.sample import sample
from lightsuite.train import train

SEQUENCE_TASKS = {"forecasting", "char_lm", "sequence_regression"}
EXPERIMENTS = ["sunspots_lstm", "sunspots_gru", "sunspots_rnn", "chars_lstm", "adding_lstm", "adding_rnn"]
# small data so that a fast_dev_run stays a smoke test
SMALL = {
    "sunspots": ["task.arima_max_order=[1,0,0]", "task.baselines=[naive,arima]", "task.plot=false"],
    "chars": ["data.max_chars=20000", "model.hidden_size=16"],
    "adding": ["data.num_train=256", "data.num_val=64", "data.num_test=64", "data.seq_len=20"],
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_each_experiment(make_cfg, experiment):
    cfg = make_cfg(
        "train", [*FAST, f"experiment={experiment}", "debug=fdr", *SMALL[experiment.split("_")[0]]]
    )
    metrics = train(cfg)
    assert cfg.optimized_metric in metrics
    monitors = {cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.early_stopping.monitor}
    assert monitors <= set(metrics), monitors
    test_key = {"sunspots": "test/mase", "chars": "test/bpc", "adding": "test/mse"}[experiment.split("_")[0]]
    assert np.isfinite(metrics[test_key])


def test_every_sequence_experiment_is_tested():
    """Every shipped experiment of a sequence task is in EXPERIMENTS, and each of those is shipped."""
    shipped = {}
    for path in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"):
        defaults = yaml.safe_load(path.read_text()).get("defaults", [])
        tasks = [entry["override /task"] for entry in defaults if "override /task" in entry]
        shipped[path.stem] = tasks[0] if tasks else None
    sequence = {name for name, task in shipped.items() if task in SEQUENCE_TASKS}
    assert sequence == set(EXPERIMENTS)
    assert {"sunspots_lstm", "chars_lstm", "adding_lstm"} <= sequence  # the parsing found them at all


@pytest.mark.slow
def test_sampler_prints_prompt_and_the_requested_length(make_cfg, tmp_path, capsys):
    overrides = [
        *FAST,
        "experiment=chars_lstm",
        *SMALL["chars"],
        "trainer.max_steps=2",
        "trainer.max_epochs=1",
    ]
    train(make_cfg("train", overrides))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    options = ["prompt='def f'", "length=200", "temperature=0.8", "seed=1"]
    summary = sample(make_cfg("sample", [f"ckpt_path={ckpt}", *options]))
    text = capsys.readouterr().out
    assert summary == "sampled 200 characters after a 5-character prompt at temperature 0.8"
    assert text.startswith("def f") and len(text) == 5 + 200 + 1  # and the closing newline
    assert sample(make_cfg("sample", [f"ckpt_path={ckpt}", *options])) == summary
    assert capsys.readouterr().out == text  # the seed fixes the draw
    with pytest.raises(SystemExit), exit_on_user_error():
        sample(make_cfg("sample", [f"ckpt_path={ckpt}", "temperature=0"]))
    assert (
        capsys.readouterr().err == "error: temperature=0.0 must be > 0 (1 = the model's own distribution)\n"
    )


def test_csv_errors_are_one_line_and_the_issue_command_works(make_cfg, tmp_path, capsys):
    csv = tmp_path / "my.csv"
    rng = np.random.default_rng(0)
    csv.write_text("month,value\n" + "".join(f"{i},{i % 12 + rng.normal():.3f}\n" for i in range(80)))
    args = [*FAST, "experiment=sunspots_lstm", "data=csv", f"data.path={csv}", "data.time_column=month"]
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(make_cfg("train", [*args, "data.target_column=sales", "data.period=12"]))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"error: data.target_column='sales' is not a column of {csv}; its columns are: month, value\n"
    )
    assert not (tmp_path / "run" / "metrics.json").exists()
    # the issue's own command shape, on one's own file
    overrides = [*args, "data.target_column=value", "data.period=12", "debug=fdr", *SMALL["sunspots"]]
    assert "baseline/arima/test/mase" in train(make_cfg("train", overrides))

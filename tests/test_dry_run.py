"""`dry_run=true` checks and builds every model and experiment in seconds, with no data and no run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightsuite import CONFIG_DIR
from lightsuite.train import train

CONF = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _target(model: str) -> str:
    return yaml.safe_load((CONF / "model" / f"{model}.yaml").read_text())["_target_"]


def _family_experiment(model: str) -> str | None:
    """An experiment that picks `model`, or a network of the same class (its family's task and
    data); None for the image classifiers, which the default config trains."""
    picked = {}
    for experiment in EXPERIMENTS:
        text = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())
        for entry in text.get("defaults", []):
            if isinstance(entry, dict) and "override /model" in entry:
                picked.setdefault(entry["override /model"], experiment)
    if model in picked:
        return picked[model]
    return next((exp for other, exp in picked.items() if _target(other) == _target(model)), None)


MODEL_RUNS = [(p.stem, _family_experiment(p.stem)) for p in sorted((CONF / "model").glob("*.yaml"))]


def _dry(make_cfg, tmp_path, overrides, capsys):
    # data sets that are not on disk must not matter to a dry run
    metrics = train(make_cfg("train", [*overrides, "dry_run=true"]))
    out = capsys.readouterr().out
    assert metrics == {}
    assert "dry run ok:" in out and " parameters (" in out, out[-500:]
    assert not (tmp_path / "run").exists(), "a dry run wrote into its run dir"
    return out


@pytest.mark.parametrize(("model", "experiment"), MODEL_RUNS, ids=[m for m, _ in MODEL_RUNS])
def test_dry_run_of_every_model(make_cfg, tmp_path, capsys, model, experiment):
    overrides = [f"experiment={experiment}"] if experiment else []
    out = _dry(make_cfg, tmp_path, [*overrides, f"model={model}"], capsys)
    assert f"around {_target(model).rsplit('.', 1)[-1]}," in out


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_dry_run_of_every_experiment(make_cfg, tmp_path, capsys, experiment):
    _dry(make_cfg, tmp_path, [f"experiment={experiment}"], capsys)

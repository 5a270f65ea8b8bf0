"""A built wheel, installed (not editable) into a fresh venv, trains from any directory, with a user's
own config dir and `_target_`s (examples/my_project)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_trains_from_another_directory_with_a_users_config_dir(tmp_path):
    # build from a copy: setuptools writes build/ into the tree it builds
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", f"-w{dist}"],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("lightsuite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for conf in (
        "train.yaml",
        "hparams_search/digits_resnet.yaml",
        "hydra/launcher/slurm.yaml",
        "hydra/sweeper/optuna.yaml",
    ):
        assert f"lightsuite/conf/{conf}" in names, f"{conf} is not in the wheel"
    # Hydra finds the suite's launcher and sweeper only in the hydra_plugins namespace
    for plugin in ("lightsuite_launcher/slurm_launcher.py", "lightsuite_sweeper/optuna_sweeper.py"):
        assert f"hydra_plugins/{plugin}" in names, f"{plugin} is not in the wheel"

    # a fresh venv without system site-packages; lightsuite from the wheel alone. Its dependencies
    # come from this test's environment through a .pth line (installing torch again takes minutes).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})  # the venv's
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    deps = sysconfig.get_path("purelib")
    (site / "zz_deps.pth").write_text(deps + "\n")
    python = venv / "bin" / "python"

    project = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "my_project", project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "PYTHONPATH": str(project),  # the user's own module, my_models
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, lightsuite.train as t; sys.argv[0] = 'lightsuite-train'; print(t.__file__, "
            "file=sys.stderr); t.main()",
            f"--config-dir={project / 'conf'}",
            "experiment=quick_mlp",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "callbacks.rich_progress_bar=null",
            "callbacks.rich_model_summary=null",
            "hydra.run.dir=run",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # lightsuite came from the installed wheel, not from this checkout
    assert str(site) in proc.stderr and str(ROOT / "src") not in proc.stderr
    run = elsewhere / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    config = (run / "config.yaml").read_text()
    assert "_target_: my_models.MLP" in config and "my_project" in config
    assert proc.stdout.strip().splitlines()[-1].startswith(f"run dir: {run}")

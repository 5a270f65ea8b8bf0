"""Start-up: the entry point and Hydra's plugin scan load nothing heavy; a wrong value is refused
before torch loads (the import-free pass of the config checker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = {
    "torch",
    "pytorch_lightning",
    "torchmetrics",
    "torchvision",
    "optuna",
    "submitit",
    "sklearn",
    "matplotlib",
}


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=300
    )


def test_the_entry_point_and_the_plugin_scan_import_nothing_heavy():
    result = _python(
        """
        import sys
        import lightsuite.train
        from hydra.core.plugins import Plugins
        from hydra.plugins.launcher import Launcher
        from hydra.plugins.sweeper import Sweeper
        names = [c.__name__ for c in Plugins.instance().discover(Launcher)]
        names += [c.__name__ for c in Plugins.instance().discover(Sweeper)]
        assert {"SlurmLauncher", "ParallelLauncher", "OptunaSweeper"} <= set(names), names
        print(*sorted({m.split(".")[0] for m in sys.modules}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert not set(result.stdout.split()) & HEAVY


def test_a_wrong_value_is_one_line_before_torch_loads(tmp_path):
    result = _python(
        """
        import sys
        from lightsuite.train import main
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code, "torch" in sys.modules, "pytorch_lightning" in sys.modules)
        """,
        "task.optimizer.lr=abc",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.stdout.split() == ["exit", "1", "False", "False"], result.stdout + result.stderr
    assert result.stderr.strip().startswith("error: task.optimizer.lr='abc' is not a float"), result.stderr


def _answer_before_torch(entry: str, *args: str) -> subprocess.CompletedProcess:
    """`lightsuite.<entry>.main()` with `args`, printing its exit code and whether torch/Lightning loaded."""
    return _python(
        f"""
        import sys
        from lightsuite.{entry} import main
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code, "torch" in sys.modules, "pytorch_lightning" in sys.modules)
        """,
        *args,
    )


def test_eval_and_sample_answer_help_before_torch_loads():
    for entry in ("eval", "sample"):
        result = _answer_before_torch(entry, "--help")
        assert result.stdout.split()[-4:] == ["exit", "0", "False", "False"], result.stdout + result.stderr
        assert "ckpt_path" in result.stdout  # Hydra's help: the composed config


def test_eval_and_sample_refuse_a_missing_checkpoint_in_one_line_before_torch_loads(tmp_path):
    missing = tmp_path / "nowhere.ckpt"
    for entry in ("eval", "sample"):
        result = _answer_before_torch(entry, f"ckpt_path={missing}", f"hydra.run.dir={tmp_path}")
        assert result.stdout.split() == ["exit", "1", "False", "False"], result.stdout + result.stderr
        assert result.stderr.strip() == (
            f"error: ckpt_path={missing}: no such file; pass ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    result = _answer_before_torch(
        "sample", f"ckpt_path={missing}", "num_samples=abc", f"hydra.run.dir={tmp_path}"
    )
    assert result.stdout.split() == ["exit", "1", "False", "False"], result.stdout + result.stderr
    assert result.stderr.strip().startswith("error: num_samples='abc' is not an integer"), result.stderr

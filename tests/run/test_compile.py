"""`compile=auto|true|false`: compiled fits compute what eager ones do, checkpoints do not know the
difference, `auto` decides by the run's steps, and a compiler failure leaves an eager run and one line.

torch.compile is the cost here (tens of seconds per network with inductor on this CPU, cold): one
classification run uses inductor, the code a GPU run gets; the GAN and the sequence model use
`aot_eager` (dynamo's capture and AOT autograd's graphs without code generation), which checks that
both networks are captured and trained through their graphs at a fraction of the time.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FAST, RESNET8_DIGITS

from lightsuite.run import compile as compiling
from lightsuite.run.compile import BREAK_EVEN, compile_decision
from lightsuite.train import train

pytestmark = pytest.mark.slow

# the ResNet-8 with SGD: Adam's per-weight normalisation magnifies the compiled kernels' rounding in
# weights whose gradients are near zero, where SGD keeps it at rounding size
TINY_DIGITS = [
    *FAST,
    *RESNET8_DIGITS[:2],
    "task.optimizer.lr=0.05",
    "task/scheduler=constant",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "callbacks.early_stopping=null",
    "trainer.deterministic=true",
    "seed=1",
]
# compiled kernels reorder float sums: the same run agrees to this relative tolerance, not bitwise
RTOL = 2e-3


@pytest.fixture
def compiled_calls(monkeypatch) -> dict[str, int]:
    """Calls that went through each network's compiled call (training steps only: eval is eager)."""
    calls: dict[str, int] = {}
    through = compiling.EagerOnFailure.__call__

    def counting(self, *args, **kwargs):
        calls[self.name] = calls.get(self.name, 0) + 1
        return through(self, *args, **kwargs)

    monkeypatch.setattr(compiling.EagerOnFailure, "__call__", counting)
    return calls


def _close(compiled: dict[str, float], eager: dict[str, float], keys: list[str]) -> None:
    for key in keys:
        assert compiled[key] == pytest.approx(eager[key], rel=RTOL, abs=1e-4), key


def test_auto_compiles_only_past_the_break_even_and_says_why():
    case = "classification, images of 32 px and up"
    pays = BREAK_EVEN["cpu"][case]
    assert compile_decision(True, case, 1, "cpu") == (
        True,
        "compile=true: compiling the networks for the fit",
    )
    assert compile_decision(False, case, 10**9, "cpu") == (False, "")
    chosen, line = compile_decision("auto", case, pays - 1, "cpu")
    assert not chosen and line.startswith("compile=auto: eager (~") and f"{case})" in line
    chosen, line = compile_decision("auto", case, pays, "cpu")
    assert chosen and line.startswith("compile=auto: compiled")
    # measured slower compiled: never, however long the run
    assert BREAK_EVEN["cpu"]["gan"] == math.inf
    assert compile_decision("auto", "gan", 10**9, "cpu")[0] is False
    # nothing measured for that accelerator or case: eager, and the line says how to force it
    chosen, line = compile_decision("auto", case, 10**9, "xpu")
    assert not chosen and "compile=true compiles anyway" in line


def test_a_wrong_compile_value_is_one_line(make_cfg):
    from lightsuite.config.checks import check_config
    from lightsuite.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^compile='sometimes' is not true or false or 'auto'$"):
        check_config(make_cfg("train", ["compile=sometimes"]))


def test_a_compiled_classifier_trains_as_the_eager_one_and_its_checkpoints_are_interchangeable(
    make_cfg, tmp_path, capfd, compiled_calls
):
    eager = train(make_cfg("train", [*TINY_DIGITS, "compile=false"], run_dir=tmp_path / "eager"))
    assert compiled_calls == {}
    compiled = train(make_cfg("train", [*TINY_DIGITS, "compile=true"], run_dir=tmp_path / "compiled"))
    assert "compile=true: compiling the networks for the fit" in capfd.readouterr().err
    # every training step (3 batches x 2 epochs) compiled; validation and the test eager
    assert compiled_calls == {"net": 6}
    _close(compiled, eager, ["train/loss_epoch", "val/loss", "test/loss", "test/acc"])
    saved = {
        name: torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        for name in ("eager", "compiled")
    }
    # compiled in place: the same keys, no `_orig_mod.` prefix, and the same optimizer layout
    assert saved["compiled"]["state_dict"].keys() == saved["eager"]["state_dict"].keys()
    for name in ("eager", "compiled"):
        assert [len(g["params"]) for g in saved[name]["optimizer_states"][0]["param_groups"]] == [
            len(g["params"]) for g in saved["eager"]["optimizer_states"][0]["param_groups"]
        ]
    # each run's checkpoint continues under the other setting: a third epoch, same result within RTOL
    more = [*TINY_DIGITS, "trainer.max_epochs=3"]
    ckpt = {name: tmp_path / name / "checkpoints" / "last.ckpt" for name in saved}
    eager_on = train(
        make_cfg("train", [*more, "compile=false", f"ckpt_path={ckpt['compiled']}"], tmp_path / "a")
    )
    compiled_on = train(
        make_cfg("train", [*more, "compile=true", f"ckpt_path={ckpt['eager']}"], tmp_path / "b")
    )
    reference = train(
        make_cfg("train", [*more, "compile=false", f"ckpt_path={ckpt['eager']}"], tmp_path / "c")
    )
    _close(compiled_on, reference, ["train/loss_epoch", "val/loss", "test/loss"])
    _close(eager_on, reference, ["train/loss_epoch", "val/loss", "test/loss"])
    # the test stage is eager: the compiled run's best checkpoint tests to exactly its own figures
    (best,) = (tmp_path / "compiled" / "checkpoints").glob("epoch_*.ckpt")
    again = train(make_cfg("train", [*TINY_DIGITS, "train=false", f"ckpt_path={best}"], tmp_path / "d"))
    assert {k: v for k, v in compiled.items() if k.startswith("test/")} == again


def _broken(gm, example_inputs):
    raise RuntimeError("this backend always fails")


def test_a_compiler_failure_falls_back_to_eager_with_one_line(make_cfg, tmp_path, capfd, monkeypatch):
    eager = train(make_cfg("train", [*TINY_DIGITS, "compile=false"], run_dir=tmp_path / "eager"))
    monkeypatch.setattr(compiling, "BACKEND", _broken)
    fallen = train(make_cfg("train", [*TINY_DIGITS, "compile=true"], run_dir=tmp_path / "fallen"))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("compile: net runs eager")]
    assert len(lines) == 1 and "this backend always fails" in lines[0], err[-3000:]
    # eager from the first step on: exactly the eager run
    assert fallen == eager


GAUSSIANS_GAN = [
    *FAST,
    "experiment=gaussians_gan",
    "data.num_train=512",
    "data.num_val=200",
    "data.num_test=200",
    "data.batch_size=128",
    "model.hidden_size=16",
    "task.num_eval_samples=200",
    "trainer.max_epochs=2",
    "callbacks.early_stopping=null",
    "trainer.deterministic=true",
    "seed=2",
]
ADDING = [
    *FAST,
    "experiment=adding_lstm",
    "model=lstm_equations",
    "model.hidden_size=8",
    "data.seq_len=6",
    "data.num_train=256",
    "data.num_val=32",
    "data.num_test=32",
    "data.batch_size=32",
    "data.batches_per_step=2",
    "trainer.max_epochs=2",
    "callbacks.early_stopping=null",
    "seed=3",
]


@pytest.mark.parametrize(
    ("overrides", "keys", "nets"),
    [
        (GAUSSIANS_GAN, ["train/d_loss", "train/g_loss", "test/hq_ratio"], {"generator", "discriminator"}),
        (ADDING, ["train/loss_epoch", "val/mse", "test/mse"], {"net"}),
    ],
    ids=["gan", "sequence"],
)
def test_compiled_gan_and_sequence_fits_train_as_eager_ones(
    overrides, keys, nets, make_cfg, tmp_path, monkeypatch, compiled_calls
):
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    eager = train(make_cfg("train", [*overrides, "compile=false"], run_dir=tmp_path / "eager"))
    compiled = train(make_cfg("train", [*overrides, "compile=true"], run_dir=tmp_path / "compiled"))
    assert set(compiled_calls) == nets and all(compiled_calls.values())
    if nets == {"net"}:  # 8 training batches x 2 epochs, grouped 2 per Lightning step: 16 forwards
        assert compiled_calls["net"] == 16
    _close(compiled, eager, keys)

"""task=gan through `train(cfg)`: every network x data pair, the training mechanics, divergence, pictures."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightsuite.errors import ConfigError, DivergedError, user_error
from lightsuite.models.gan import dcgan
from lightsuite.models.resnet import resnet20
from lightsuite.run.build import build, prepare_run
from lightsuite.tasks.gan.task import GANTask
from lightsuite.train import train

# 512 points, batches of 64 (experiment: 8 rounds per step -> one Lightning step of 512)
TOY = [*FAST, "experiment=gaussians_gan", "data.num_train=512", "data.num_val=200", "data.num_test=200"]
TOY += ["data.batch_size=512", "model.hidden_size=16", "task.num_eval_samples=200"]


@pytest.fixture(scope="session")
def fid_cache(tmp_path_factory) -> Path:
    """One cached 1-epoch FID classifier of the digits for every test that needs one."""
    return tmp_path_factory.mktemp("fid_classifiers")


# the experiment's DCGAN keys do not apply to the MLP
MLP = ["model=mlp_gan", "~model.width", "model.hidden_size=16"]


def digits(fid_cache: Path, *extra: str) -> list[str]:
    return [
        *FAST,
        "experiment=digits_dcgan",
        "model.latent_dim=8",
        "task.num_eval_samples=100",
        f"task.fid_classifier_dir={fid_cache}",
        "task.fid_classifier_epochs=1",
        *extra,
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        [*MLP],
        ["model.width=8"],
        [*MLP, "data=synthetic", "data.input_shape=[1,28,28]"],
        ["model.width=8", "data=synthetic", "data.input_shape=[1,28,28]"],
        ["model.width=8", "data=synthetic", "data.input_shape=[3,32,32]"],
    ],
    ids=["mlp_digits", "dcgan_digits", "mlp_28", "dcgan_28", "dcgan_32"],
)
def test_fast_dev_run_of_each_network_on_image_data(make_cfg, fid_cache, overrides):
    extra = [*overrides, "debug=fdr"]
    if "data=synthetic" in overrides:  # random pixels: no FID classifier worth training
        extra += ["data.num_images=256", "data.pixels=symmetric", "task.fid=false"]
    metrics = train(make_cfg("train", digits(fid_cache, *extra)))
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("train/d_loss", "train/g_loss"))
    if "data=synthetic" not in overrides:
        references = ("val/fid_real", "val/class_confidence_real", "val/fid_classifier_acc")
        for key in ("val/fid", "val/class_confidence", "test/fid", *references):
            assert key in metrics, key
        assert 0 <= metrics["val/class_confidence"] <= 1 and metrics["val/fid"] > 0


@pytest.mark.parametrize("loss", ["minimax", "non_saturating", "hinge", "wgan_gp"])
def test_fast_dev_run_of_each_loss_on_the_ring(make_cfg, loss):
    metrics = train(make_cfg("train", [*TOY, "debug=fdr", f"task.loss={loss}"]))
    assert {"val/modes_covered", "val/hq_ratio", "test/modes_covered", "train/d_loss"} <= set(metrics)
    assert 0 <= metrics["val/modes_covered"] <= 8 and 0 <= metrics["val/hq_ratio"] <= 1


def _built(make_cfg, *overrides):
    cfg = make_cfg("train", [*TOY, *overrides])
    datamodule, task = prepare_run(cfg)
    trainer = build(cfg.trainer, "trainer", callbacks=[], logger=False)
    return datamodule, task, trainer


def test_n_critic_rounds_and_pack_count_optimizer_steps(make_cfg):
    """4 rounds per step, 2 critic steps each: 8 D steps and 4 G steps on one batch of 512."""
    datamodule, task, trainer = _built(
        make_cfg, "task.rounds_per_step=4", "task.n_critic=2", "task.pack=4", "trainer.max_steps=1"
    )
    assert task.net.discriminator[1].in_features == 2 * 4  # D reads packs of 4 points
    trainer.fit(task, datamodule=datamodule)
    g_opt, d_opt = (opt.optimizer if hasattr(opt, "optimizer") else opt for opt in trainer.optimizers)
    step = lambda opt: int(opt.state[opt.param_groups[0]["params"][0]]["step"])  # noqa: E731
    assert (step(d_opt), step(g_opt)) == (8, 4)


class _ThroughLightning(pl.Callback):
    """Sends every round through Lightning's manual_backward and optimizer step."""

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module._lean_rounds = False


def test_lean_rounds_do_the_same_math_as_lightnings_path(make_cfg):
    def params(*callbacks):
        torch.manual_seed(0)
        cfg = make_cfg("train", [*TOY, "task.rounds_per_step=4", "task.ema_decay=0.5", "trainer.max_steps=2"])
        datamodule, task = prepare_run(cfg)
        trainer = build(cfg.trainer, "trainer", callbacks=list(callbacks), logger=False)
        trainer.fit(task, datamodule=datamodule)
        return torch.cat([p.detach().flatten() for p in task.parameters()])

    lean, lightning = params(), params(_ThroughLightning())
    assert torch.equal(lean, lightning)


class _CountSteps(pl.Callback):
    """Backward passes and optimizer steps Lightning reported, per Lightning step."""

    def __init__(self) -> None:
        self.backwards = self.steps = 0
        self.per_step: list[tuple[int, int]] = []

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backwards += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_step.append((self.backwards, self.steps))
        self.backwards = self.steps = 0


def _fit_rounds(make_cfg, *callbacks) -> tuple[GANTask, pl.Trainer]:
    """Two Lightning steps (one per epoch) of 8 rounds, one critic step each: 16 updates per step."""
    cfg = make_cfg("train", [*TOY, "task.rounds_per_step=8", "task.n_critic=1", "trainer.max_epochs=2"])
    datamodule, task = prepare_run(cfg)
    trainer = build(cfg.trainer, "trainer", callbacks=list(callbacks), logger=False)
    trainer.fit(task, datamodule=datamodule)
    return task, trainer


def test_a_callback_with_backward_or_step_hooks_sees_every_round(make_cfg):
    counter = _CountSteps()
    task, _ = _fit_rounds(make_cfg, counter)
    assert counter.per_step == [(16, 16), (16, 16)]
    assert not task._lean_rounds


def test_without_such_callbacks_the_later_rounds_skip_lightnings_dispatch(make_cfg):
    task, trainer = _fit_rounds(make_cfg)
    assert task._lean_rounds
    # Lightning's step counter sees the first round's D and G steps only: 2 of each step's 16
    assert trainer.global_step == 2 * 2


class _GeneratorSnapshots(pl.Callback):
    """G's weights after every generator optimizer step, Lightning's and the lean rounds' alike."""

    def __init__(self) -> None:
        self.weights: list[np.ndarray] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def keep(*_) -> None:
            self.weights.append(_flat(pl_module.net.generator).numpy().astype(np.float64))

        trainer.optimizers[0].register_step_post_hook(keep)


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def test_ema_after_n_generator_steps_is_the_closed_form_and_is_what_samples(make_cfg):
    """EMA_n = d^n G_0 + (1 - d) sum_k d^(n - k) G_k over the n generator steps (d = 0.8)."""
    decay = 0.8
    ema = [f"task.ema_decay={decay}", "task.rounds_per_step=4", "trainer.max_epochs=2"]
    cfg = make_cfg("train", [*TOY, *ema])
    datamodule, task = prepare_run(cfg)
    snapshots = _GeneratorSnapshots()
    trainer = build(cfg.trainer, "trainer", callbacks=[snapshots], logger=False)
    start = _flat(task.net.generator).numpy().astype(np.float64)
    assert np.array_equal(_flat(task.ema).numpy(), start)  # the average starts at G's initial weights
    trainer.fit(task, datamodule=datamodule)
    n = len(snapshots.weights)
    assert n == 8  # 2 epochs of one Lightning step x 4 rounds: the first through Lightning, 3 lean
    expected = decay**n * start
    for k, weights in enumerate(snapshots.weights, start=1):
        expected += (1 - decay) * decay ** (n - k) * weights
    np.testing.assert_allclose(_flat(task.ema).numpy(), expected, rtol=0, atol=1e-6)
    assert np.abs(expected - snapshots.weights[-1]).max() > 1e-3  # not simply G's latest weights
    assert task.sampler is task.ema
    torch.manual_seed(1)
    sampled = task.generate(4)
    torch.manual_seed(1)
    assert torch.allclose(sampled, task.ema.eval()(torch.randn(4, task.net.latent_dim)))


def test_ema_generator_takes_the_generators_batchnorm_statistics():
    net = dcgan(input_shape=(1, 8, 8), latent_dim=4, width=4)
    task = GANTask(net, partial(torch.optim.Adam), partial(torch.optim.Adam), ema_decay=0.9, fid=False)
    net.generator.train()(torch.randn(16, 4) * 3 + 1)  # moves G's running statistics
    task._update_ema()
    buffers = list(net.generator.buffers())
    assert buffers and not torch.equal(buffers[0], torch.zeros_like(buffers[0]))
    for ema, live in zip(task.ema.buffers(), buffers, strict=True):
        assert torch.equal(ema, live)


@pytest.mark.parametrize("rounds", [1, 2], ids=["lightning_path", "lean_rounds"])
def test_in_step_gradient_clipping_bounds_each_update(make_cfg, rounds):
    sgd = ["task.g_optimizer._target_=torch.optim.SGD", "task.d_optimizer._target_=torch.optim.SGD"]
    sgd += ["~task.g_optimizer.betas", "~task.d_optimizer.betas", f"task.rounds_per_step={rounds}"]
    sgd += ["trainer.max_steps=1"]

    def change(*clip):
        torch.manual_seed(0)
        datamodule, task, trainer = _built(make_cfg, *sgd, *clip)
        start = torch.cat([p.detach().flatten().clone() for p in task.net.discriminator.parameters()])
        trainer.fit(task, datamodule=datamodule)
        end = torch.cat([p.detach().flatten() for p in task.net.discriminator.parameters()])
        return (end - start).norm().item()

    # each SGD step of lr 1e-3 on a gradient clipped to norm 1e-3 moves D by at most 1e-6
    assert change("task.grad_clip=1e-3") <= rounds * 1.01e-6 < 1e-4 < change()


def test_a_non_finite_loss_stops_the_run_naming_the_learning_rates(make_cfg, tmp_path):
    lrs = ["task.g_optimizer.lr=1e30", "task.d_optimizer.lr=1e30", "trainer.max_epochs=3"]
    with pytest.raises(DivergedError, match=r"g_optimizer.lr, now 1e\+30.*d_optimizer.lr, now 1e\+30"):
        train(make_cfg("train", [*TOY, *lrs]))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_scatter_plots_are_written_and_logged_to_tensorboard(make_cfg, tmp_path):
    cfg = make_cfg(
        "train",
        [
            *TOY,
            "logger=[csv,tensorboard]",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "task.sample_every_n_epochs=1",
        ],
    )
    train(cfg)
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "val/samples" in events.Tags()["images"]
    assert json.loads((run / "metrics.json").read_text())["val/modes_covered"] >= 0
    # one step axis: a picture sits at the step of the validation scalars it was drawn with (one step
    # per batch, here one per epoch), not at the optimizer steps (G's and D's) that `global_step` counts
    image_steps = [e.step for e in events.Images("val/samples")]
    assert image_steps == [0, 1]
    assert [e.step for e in events.Scalars("val/modes_covered")] == image_steps
    # the learning-rate monitor names the two rates after their networks
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lr-G", "lr-D"} <= set(header)
    assert not [name for name in header if name.startswith("lr-Adam")]


def test_fid_classifier_is_cached_frozen_and_kept_out_of_the_checkpoint(make_cfg, fid_cache, tmp_path):
    cfg = make_cfg(
        "train", digits(fid_cache, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "model.width=8")
    )
    train(cfg)
    cached = list(fid_cache.glob("fid_DigitsDataModule_resnet20_*.pt"))
    assert len(cached) == 1
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    # G and D, the EMA copy of G (digits_dcgan has one) and the fixed noise: no classifier weights
    assert {k.split(".")[0] for k in ckpt["state_dict"]} == {"net", "ema", "fixed_noise"}
    # a second task on the same data loads the cached classifier instead of training one
    mtime = cached[0].stat().st_mtime_ns
    datamodule, task = prepare_run(make_cfg("train", digits(fid_cache), run_dir=tmp_path / "again"))
    datamodule.setup("fit")
    task.evaluation.build(datamodule, task.net.sample_shape, torch.device("cpu"))
    features = task.evaluation.feature_net
    assert cached[0].stat().st_mtime_ns == mtime
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    assert features.num_features == 64
    assert not any("feature" in name for name, _ in task.named_modules())


def _user_error(fn) -> str:
    """The one-line message of the user error `fn()` raises (Hydra wraps what targets raise)."""
    with pytest.raises(Exception) as info:
        fn()
    err = user_error(info.value)
    assert isinstance(err, ConfigError), info.value
    return str(err)


def test_config_errors(make_cfg, tmp_path):
    def run(*overrides):
        return _user_error(lambda: prepare_run(make_cfg("train", [*TOY, *overrides])))

    assert "choose one of: minimax, non_saturating, hinge, wgan_gp" in run("task.loss=wasserstein")
    assert "task.n_critic=0 must be >= 1" in run("task.n_critic=0")
    assert "model.pack=1 differs from task.pack=2" in run("model.pack=1")
    assert "ema_decay" in run("task.ema_decay=1.0")
    classifier = resnet20(input_shape=(1, 8, 8), num_classes=10)
    assert "GAN network" in _user_error(lambda: build(make_cfg("train", TOY).task, "task", net=classifier))
    # the default callbacks watch val/acc, which a GAN never logs: refused before training
    plain = [
        *FAST,
        "task=gan",
        "model=mlp_gan",
        "data=gaussians",
        "data.num_train=256",
        "trainer.max_epochs=1",
    ]
    message = _user_error(lambda: train(make_cfg("train", plain)))
    assert re.search(r"callbacks\.(model_checkpoint|early_stopping)\.monitor=val/acc is not logged", message)
    assert "val/modes_covered, val/hq_ratio" in message
    # Inception FID is an option only where torch-fidelity and its weights are present
    inception = [*digits(tmp_path / "fid"), "debug=fdr", f"task.fid_inception_weights={tmp_path / 'none.pt'}"]
    assert "fid_inception_weights" in _user_error(lambda: train(make_cfg("train", inception)))
    # an image GAN on standardized pixels would never match its tanh output
    fdr = [*FAST, "experiment=digits_dcgan", "data.pixels=standardized", "debug=fdr"]
    assert "data.pixels=symmetric" in _user_error(lambda: train(make_cfg("train", fdr)))

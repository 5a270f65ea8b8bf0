"""Transfer learning: `task.init_from` copies what matches and says what it kept fresh, for every
family and for torchvision's weights files; `task.freeze=backbone` leaves the backbone exactly as it
was until it unfreezes, and a resume during or after freezing ends as the uninterrupted run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import FAST
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from lightsuite import CONFIG_DIR
from lightsuite.config.checks import check_config
from lightsuite.errors import ConfigError
from lightsuite.models.resnet import imagenet_resnet, preact_resnet18
from lightsuite.run.build import build_run
from lightsuite.run.transfer import freezing_callbacks, init_network
from lightsuite.train import train

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoints_e2e6019"
TINY = [
    *FAST,
    "logger=none",
    "test=false",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
]


def compose_cfg(overrides: list[str], run_dir: Path) -> DictConfig:
    """A train config writing into `run_dir`, composed as the entry point composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(run_dir.parent / "outputs")
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A one-epoch ResNet-20 of the digits 0-4: a 5-way head."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    train(compose_cfg([*TINY, "trainer.max_epochs=1", "data.classes=[0,1,2,3,4]"], run))
    return run / "checkpoints" / "last.ckpt"


def _net_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def test_init_from_copies_the_backbone_and_keeps_a_head_of_another_size_fresh(pretrained, tmp_path, capsys):
    source = _net_state(pretrained)
    torch.manual_seed(0)
    _, fresh = build_run(compose_cfg([], tmp_path / "fresh"))
    torch.manual_seed(0)
    _, task = build_run(compose_cfg([f"task.init_from={pretrained}"], tmp_path / "run"))
    loaded = task.net.state_dict()
    head = {"fc.weight", "fc.bias"}
    assert all(torch.equal(loaded[k], source[k]) for k in loaded if k not in head)
    # the 10-way head is as built: the same draw as a network built without init_from
    assert all(torch.equal(loaded[k], fresh.net.state_dict()[k]) for k in head)
    assert loaded["fc.weight"].shape == (10, 64) and source["fc.weight"].shape == (5, 64)
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        f"init_from: loaded {len(loaded) - 2} tensors from {pretrained}; "
        "kept fresh (shape differs): net.fc.weight, net.fc.bias"
    ]


@pytest.mark.parametrize(
    ("checkpoint", "overrides"),
    [
        ("gan.ckpt", ["experiment=gaussians_gan", "model.hidden_size=16", "model.num_layers=2"]),
        ("forecast.ckpt", ["experiment=sunspots_lstm", "model.hidden_size=8"]),
        ("chars.ckpt", ["experiment=chars_lstm", "model.hidden_size=16", "model.num_layers=1"]),
    ],
)
def test_init_from_starts_every_family_from_its_checkpoint(checkpoint, overrides, tmp_path, capsys):
    ckpt = FIXTURES / checkpoint
    extra = ["model.embedding_dim=8"] if checkpoint == "chars.ckpt" else []
    _, task = build_run(compose_cfg([*overrides, *extra, f"task.init_from={ckpt}"], tmp_path / "run"))
    source = _net_state(ckpt)
    loaded = task.net.state_dict()
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)
    said = capsys.readouterr().err.strip()
    assert said.endswith(f"loaded all {len(loaded)} tensors of the network from {ckpt}")


def test_a_torchvision_weights_file_makes_the_suite_net_compute_as_torchvision(tmp_path, capsys):
    reference = torchvision.models.resnet18(weights=None).eval()
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), weights)
    x = torch.randn(2, 3, 32, 32)

    same = imagenet_resnet(18, input_shape=(3, 32, 32), num_classes=1000, stem="imagenet")
    print(init_network(same, weights))
    with torch.no_grad():
        assert torch.allclose(same.eval()(x), reference(x), atol=1e-5)
    # ten classes: the head is kept fresh, the features before it are torchvision's
    ours = imagenet_resnet(18, input_shape=(3, 32, 32), num_classes=10, stem="imagenet")
    print(init_network(ours, weights))
    ours.fc = reference.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), reference(x), atol=1e-5)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"init_from: loaded all 122 tensors of the network from {weights}"
    fresh = "kept fresh (shape differs): net.fc.weight, net.fc.bias"
    assert said[1] == f"init_from: loaded 120 tensors from {weights}; {fresh}"
    with pytest.raises(ConfigError, match=r"post-activation ResNet's weights .* model=preact_"):
        init_network(preact_resnet18(input_shape=(3, 32, 32)), weights)


def test_bad_init_from_is_one_line_before_any_work(pretrained, tmp_path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": torch.load(pretrained, weights_only=True)["state_dict"]}, plain)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = {
        tmp_path / "missing.ckpt": "no such file",
        tmp_path: "is a directory",
        tmp_path / "notes.txt": "is not a checkpoint lightsuite can read",
        plain: "was not written by lightsuite-train",
        FIXTURES / "gan.ckpt": "shares no tensor (by name and shape) with this ResNet: it holds a mlp_gan",
    }
    for number, (path, reason) in enumerate(cases.items()):
        run = tmp_path / f"run_{path.stem}"
        with pytest.raises(ConfigError, match=re.escape(reason)) as refused:
            # the whole command once, to see it stop before training; the rest as it builds
            (train if number == 0 else build_run)(compose_cfg([*TINY, f"task.init_from={path}"], run))
        assert str(refused.value).startswith(f"task.init_from={path}") and "\n" not in str(refused.value)
        assert not (run / "checkpoints").exists()


def test_bad_freeze_settings_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("task.freeze='head' is not 'backbone' or null")):
        check_config(compose_cfg(["task.freeze=head"], tmp_path / "a"))
    refusals = {
        "task.unfreeze_at_epoch=2": "has nothing to unfreeze: add task.freeze=backbone",
        "task.freeze=backbone task.unfreeze_at_epoch=0": "must be 1 or more",
        "task.freeze=backbone task.unfreeze_lr_factor=0": "must be > 0",
        "experiment=gaussians_gan task.freeze=backbone": "GAN has no head to train alone",
    }
    for overrides, reason in refusals.items():
        with pytest.raises(ConfigError, match=reason):
            build_run(compose_cfg(overrides.split(), tmp_path / "b"))


def test_freezing_leaves_the_head_training_and_the_backbone_computing_as_in_evaluation(tmp_path):
    cfg = compose_cfg(["task.freeze=backbone", "task.unfreeze_at_epoch=2"], tmp_path / "run")
    _, task = build_run(cfg)
    (freezing,) = freezing_callbacks(cfg, task)
    norms = [m for m in task.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    freezing.freeze_before_training(task)
    assert [n for n, p in task.net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    assert norms and not any(m.training or m.track_running_stats for m in norms)
    freezing.finetune_function(task, 1, None)
    assert not task.net.conv1.weight.requires_grad
    freezing.finetune_function(task, 2, None)
    assert all(p.requires_grad for p in task.net.parameters())
    assert all(m.training and m.track_running_stats for m in norms)


def test_frozen_backbone_stays_exact_until_it_unfreezes_and_resumes_land_on_the_same_weights(
    pretrained, tmp_path
):
    factor = 0.25
    args = [
        *TINY,
        "trainer.max_epochs=3",
        "data.classes=[5,6,7,8,9]",
        f"task.init_from={pretrained}",
        "task.freeze=backbone",
        "task.unfreeze_at_epoch=1",
        f"task.unfreeze_lr_factor={factor}",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.monitor=null",
    ]
    whole = tmp_path / "whole"
    train(compose_cfg(args, whole))
    epochs = [_net_state(whole / "checkpoints" / f"epoch_{e:03d}.ckpt") for e in range(3)]
    source = _net_state(pretrained)
    backbone = [k for k in source if not k.startswith("fc.")]
    # epoch 0 trained the head alone: every backbone tensor, batch-norm statistics included, is the file's
    assert all(torch.equal(epochs[0][k], source[k]) for k in backbone)
    assert not torch.equal(epochs[0]["fc.weight"], source["fc.weight"])
    # from epoch 1 the backbone trains too, at `factor` x the head's lr
    assert not torch.equal(epochs[1]["layer1.0.conv1.weight"], source["layer1.0.conv1.weight"])
    assert not torch.equal(epochs[1]["bn1.running_mean"], source["bn1.running_mean"])
    groups = torch.load(whole / "checkpoints" / "epoch_001.ckpt", weights_only=True)["optimizer_states"][0]
    head_lr, backbone_lr = (g["lr"] for g in groups["param_groups"])
    assert backbone_lr == pytest.approx(factor * head_lr) and head_lr > 0

    # resumed while frozen (after epoch 0) and after unfreezing (after epoch 1): the same end, and
    # init_from is not read again (by a requeue, the file may be gone)
    for epoch in (0, 1):
        resumed = tmp_path / f"resumed_{epoch}"
        saved = whole / "checkpoints" / f"epoch_{epoch:03d}.ckpt"
        gone = f"task.init_from={tmp_path / 'gone.ckpt'}"
        train(compose_cfg([*args, gone, f"ckpt_path={saved}"], resumed))
        end = _net_state(resumed / "checkpoints" / "epoch_002.ckpt")
        assert all(torch.equal(end[k], epochs[2][k]) for k in end), f"resumed after epoch {epoch}"

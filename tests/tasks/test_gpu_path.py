"""The tasks' GPU path (tasks/optim.py): fused optimizers and channels_last, decided and checked on a CPU.

What a CPU can show: the decisions (named CUDA devices are never used), that channels_last changes no
output, and that a CPU run keeps the default layout and optimizer unless told otherwise. The tests at
the end need a GPU and skip without one (scripts/gpu-smoke.sh runs them).
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, ONE_TINY_EPOCH
from torch import nn

from lightsuite.models.gan import dcgan
from lightsuite.models.resnet import resnet20
from lightsuite.tasks.optim import fused_kwargs, make_optimizer, to_channels_last, uses_channels_last
from lightsuite.train import train

CL = torch.channels_last
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def laid_out(net: nn.Module) -> list[torch.Tensor]:
    """The 4-D weights whose channels_last layout differs from the default one (C > 1, a k x k kernel)."""
    return [p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1]


@pytest.mark.parametrize(
    ("cls", "device", "keywords", "expected"),
    [
        (torch.optim.SGD, "cuda", {"lr": 0.1, "momentum": 0.9}, {"fused": True}),
        (torch.optim.Adam, "cuda", {"lr": 2e-4, "betas": (0.5, 0.999)}, {"fused": True}),
        (torch.optim.AdamW, "cuda", {"lr": 1e-3}, {"fused": True}),
        (torch.optim.Adagrad, "cuda", {}, {"fused": True}),
        (torch.optim.AdamW, "cpu", {"lr": 1e-3}, {}),  # CPU runs stay as they were
        (torch.optim.Adam, "mixed", {}, {}),  # parameters on several devices, or not all floating
        (torch.optim.RMSprop, "cuda", {}, {}),  # no fused kernel in torch
        (torch.optim.LBFGS, "cuda", {}, {}),
        (torch.optim.Adam, "cuda", {"fused": False}, {}),  # the user's choice stands
        (torch.optim.Adam, "cuda", {"foreach": True}, {}),  # fused and foreach cannot both be on
        (torch.optim.Adam, "cuda", {"foreach": False}, {}),
        (torch.optim.Adam, "cuda", {"differentiable": True}, {}),
        (torch.optim.Adam, "cuda", {"fused": None, "foreach": None}, {"fused": True}),  # null: not chosen
    ],
)
def test_fused_where_torch_has_it_on_cuda_unless_the_config_chose(cls, device, keywords, expected):
    assert fused_kwargs(cls, device, keywords) == expected


def test_make_optimizer_on_cpu_builds_the_optimizer_as_configured():
    params = list(nn.Linear(3, 2).parameters())
    sgd = make_optimizer(functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), params)
    assert sgd.defaults["fused"] is None and sgd.defaults["momentum"] == 0.9
    assert make_optimizer(functools.partial(torch.optim.Adam, fused=False), params).defaults["fused"] is False
    made = []
    plain = make_optimizer(lambda ps: made.append(ps) or torch.optim.SGD(ps, lr=1.0), iter(params))
    assert made == [params] and plain.defaults["lr"] == 1.0  # not a partial: called with the parameters alone


def test_channels_last_is_on_for_convolutions_on_cuda_by_default_and_forced_by_the_setting():
    conv, mlp = resnet20(input_shape=(1, 8, 8), num_classes=10), nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert uses_channels_last(None, cuda, conv) and not uses_channels_last(None, cpu, conv)
    assert not uses_channels_last(None, cuda, mlp)  # no 4-D weights: nothing to lay out
    assert uses_channels_last(True, cpu, conv) and not uses_channels_last(False, cuda, conv)


def test_to_channels_last_keeps_values_and_lays_out_only_image_batches():
    x = torch.randn(4, 3, 5, 6)
    y = to_channels_last(x)
    assert not x.is_contiguous(memory_format=CL) and y.is_contiguous(memory_format=CL)
    assert torch.equal(x, y) and y.stride() == (90, 1, 18, 3)
    points = torch.randn(4, 2)
    assert to_channels_last(points) is points


@pytest.mark.parametrize("which", ["resnet", "dcgan"])
def test_a_network_in_channels_last_computes_what_it_computed(which):
    torch.manual_seed(0)
    if which == "resnet":
        nets = [resnet20(input_shape=(3, 8, 8), num_classes=10)]
        inputs = [torch.randn(5, 3, 8, 8)]
    else:
        gan = dcgan(input_shape=(3, 8, 8), latent_dim=16, width=8)
        nets, inputs = [gan.generator, gan.discriminator], [torch.randn(5, 16), torch.randn(5, 3, 8, 8)]
    for net, x in zip(nets, inputs, strict=True):
        net.eval()
        fast = copy.deepcopy(net).to(memory_format=CL)
        convs = laid_out(fast)
        assert convs and all(p.is_contiguous(memory_format=CL) for p in convs)
        with torch.no_grad():
            torch.testing.assert_close(fast(to_channels_last(x)), net(x), rtol=1e-4, atol=1e-5)


class Layouts(pl.Callback):
    """Records at the first training batch whether the net's 3x3 convs, and the batch, are channels_last."""

    seen: dict[str, bool] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            convs = [
                p for p in pl_module.net.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1
            ]
            Layouts.seen = {
                "weights": all(p.is_contiguous(memory_format=CL) for p in convs),
                "fused": pl_module.optimizers().optimizer.defaults.get("fused") is True,
            }


LAYOUTS = [*FAST, *ONE_TINY_EPOCH, "callbacks.early_stopping=null"]
LAYOUTS += ["+callbacks.layouts._target_=test_gpu_path.Layouts"]


def test_a_cpu_run_keeps_nchw_unless_told_and_channels_last_trains_the_same(make_cfg, tmp_path):
    default = train(make_cfg("train", LAYOUTS, run_dir=tmp_path / "default"))
    assert Layouts.seen == {"weights": False, "fused": False}
    forced = train(make_cfg("train", [*LAYOUTS, "+task.channels_last=true"], run_dir=tmp_path / "cl"))
    assert Layouts.seen == {"weights": True, "fused": False}
    # two SGD steps in another memory layout: the same run up to float rounding
    assert forced.keys() == default.keys()
    for key, value in default.items():
        assert forced[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    assert json.loads((tmp_path / "cl" / "metrics.json").read_text()) == pytest.approx(forced)


# --- on a GPU (scripts/gpu-smoke.sh) -----------------------------------------------------------------------
GPU = ["trainer=gpu", "trainer.precision=32-true"]


@CUDA
def test_on_cuda_the_classifier_is_fused_and_channels_last_and_its_data_on_the_device(make_cfg, tmp_path):
    train(make_cfg("train", [*LAYOUTS, *GPU, "+callbacks.probe._target_=test_gpu_path.DataDevice"]))
    assert Layouts.seen == {"weights": True, "fused": True}
    assert DataDevice.seen == {"train_set": "cuda:0", "batch": "cuda:0", "index": "cuda:0"}


class DataDevice(pl.Callback):
    """Where the training split, a fresh loader's batch (before Lightning's transfer) and its indices are."""

    seen: dict[str, str] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        loader = dm.train_dataloader()
        images, _ = next(iter(loader))
        index = next(iter(loader.sampler))
        DataDevice.seen = {"train_set": str(dm.train_set.images.device), "batch": str(images.device)}
        DataDevice.seen["index"] = str(index.device)


class WatchSteps(pl.Callback):
    """Puts the task's own training step under CUDA's sync checker, from the third step on: `.item()`, a
    device-to-host copy, a blocking host-to-device copy or a data-dependent shape there raises."""

    def on_fit_start(self, trainer, pl_module) -> None:
        step = pl_module.training_step

        def watched(batch, batch_idx):
            if batch_idx < 2:  # warm-up: optimizer state and kernels are set up on the first steps
                return step(batch, batch_idx)
            torch.cuda.set_sync_debug_mode("error")
            try:
                return step(batch, batch_idx)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        pl_module.training_step = watched


STEPS = ["trainer.max_epochs=1", "trainer.limit_train_batches=6", "trainer.limit_val_batches=1"]
STEPS += ["trainer.limit_test_batches=1", "+trainer.num_sanity_val_steps=0", "callbacks.early_stopping=null"]
STEPS += ["trainer.log_every_n_steps=50", "+callbacks.watch._target_=test_gpu_path.WatchSteps"]


@CUDA
@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=digits_dcgan", "task.fid=false", "task.ema_decay=0.999"],
        ["experiment=gaussians_gan", "data.num_train=4096"],
    ],
    ids=["resnet_digits", "dcgan_digits", "gan_gaussians"],
)
def test_training_steps_never_wait_for_the_gpu(make_cfg, overrides):
    """The steps' own code only: a step that syncs raises from the op that did, named in the traceback."""
    train(make_cfg("train", [*FAST, *overrides, *GPU, *STEPS]))

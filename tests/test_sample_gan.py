"""`lightsuite-sample` on GAN checkpoints: .npy arrays and .png pictures, and the errors a user can make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CGAN_RING, FAST
from matplotlib import colormaps
from PIL import Image

from lightsuite.data.gaussians import mode_centers
from lightsuite.errors import ConfigError
from lightsuite.sample import sample
from lightsuite.train import train

TOY = [*FAST, "experiment=gaussians_gan", "data.num_train=512", "data.num_val=200", "data.num_test=200"]
TOY += ["data.batch_size=512", "model.hidden_size=16", "task.num_eval_samples=200", "trainer.max_epochs=1"]


@pytest.fixture
def toy_ckpt(make_cfg, tmp_path):
    train(make_cfg("train", TOY))
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


def test_toy_checkpoint_samples_points_and_a_scatter_plot(make_cfg, toy_ckpt, tmp_path):
    npy, png = tmp_path / "out" / "points.npy", tmp_path / "points.png"
    line = sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", "num_samples=300", f"output={npy}"]))
    points = np.load(npy)
    assert points.shape == (300, 2) and points.dtype == np.float32 and "300" in line
    again = sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", "num_samples=300", f"output={npy}"]))
    assert np.array_equal(np.load(npy), points) and again == line  # seeded
    other = tmp_path / "other.npy"
    sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", "num_samples=300", f"output={other}", "seed=1"]))
    assert not np.array_equal(np.load(other), points)
    sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", f"output={png}"]))
    image = np.asarray(Image.open(png))
    assert image.shape == (512, 512, 3)
    # the true modes (stored in the checkpoint) are drawn as red rings over the blue samples
    red = (image[..., 0] > 200) & (image[..., 1] < 80)
    assert red.sum() > 8 * 20


def test_image_checkpoint_samples_an_array_in_tanh_range_and_a_grid(make_cfg, tmp_path):
    overrides = [*FAST, "experiment=digits_dcgan", "model.width=8", "task.fid=false", "trainer.max_epochs=1"]
    # without FID nothing is logged at validation to monitor
    overrides += ["callbacks.early_stopping=null", "callbacks.model_checkpoint=null"]
    train(make_cfg("train", [*overrides, "trainer.limit_train_batches=2"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    npy, png = tmp_path / "digits.npy", tmp_path / "digits.png"
    sample(make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=10", f"output={npy}"]))
    images = np.load(npy)
    assert images.shape == (10, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    sample(make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=16", f"output={png}"]))
    # a 4x4 grid of digits enlarged 4x (32 pixels), 1-pixel gaps
    assert np.asarray(Image.open(png)).shape == (4 * 33 + 1, 4 * 33 + 1, 3)


def test_sample_errors_are_one_line(make_cfg, toy_ckpt, tmp_path):
    with pytest.raises(ConfigError, match=r"\.png .* or \.npy"):
        sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", f"output={tmp_path / 'x.txt'}"]))
    assert not (tmp_path / "x.txt").exists()
    with pytest.raises(ConfigError, match="num_samples=0"):
        sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", "num_samples=0"]))


def test_a_checkpoint_of_a_task_that_does_not_sample_is_refused(make_cfg, tmp_path):
    # a forecaster predicts its series; there is nothing to draw from it
    ckpt = Path(__file__).parent / "fixtures" / "checkpoints_e2e6019" / "forecast.ckpt"
    out = tmp_path / "x.png"
    with pytest.raises(ConfigError) as info:
        sample(make_cfg("sample", [f"ckpt_path={ckpt}", f"output={out}"]))
    assert str(info.value) == (
        f"ckpt_path={ckpt} is a checkpoint of ForecastingTask, which does not sample; "
        "lightsuite-sample takes checkpoints of GANs, the character language model and image classifiers "
        "(fooling images)"
    )
    assert not out.exists()


CTOY = [*CGAN_RING, "task.num_eval_samples=200"]


def test_label_samples_its_class_and_no_label_colours_every_class(make_cfg, toy_ckpt, tmp_path):
    train(make_cfg("train", CTOY, run_dir=tmp_path / "crun"))
    ckpt = tmp_path / "crun" / "checkpoints" / "last.ckpt"
    modes = mode_centers("ring")
    for label in (3, 6):
        npy = tmp_path / f"label{label}.npy"
        line = sample(
            make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=200", f"output={npy}", f"label={label}"])
        )
        nearest = torch.cdist(torch.from_numpy(np.load(npy)), modes).argmin(dim=1)
        assert (nearest == label).float().mean() >= 0.8 and f"of class {label}" in line
    png = tmp_path / "classes.png"
    sample(make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=800", f"output={png}"]))
    pixels = np.asarray(Image.open(png)).reshape(-1, 3)
    colours = {tuple(int(255 * c) for c in colormaps["tab10"](k)[:3]) for k in range(8)}
    assert colours <= {tuple(p) for p in pixels.tolist()}  # a dot of every class's colour
    with pytest.raises(ConfigError, match=r"^label=8 is out of range: this generator knows classes 0 to 7$"):
        sample(make_cfg("sample", [f"ckpt_path={ckpt}", "label=8"]))
    with pytest.raises(
        ConfigError, match=r"^label=3 needs a class-conditional GAN, but ckpt_path=.* is unconditional"
    ):
        sample(make_cfg("sample", [f"ckpt_path={toy_ckpt}", "label=3", f"output={tmp_path / 'no.png'}"]))
    with pytest.raises(ConfigError, match=r"label='three' is not an integer or null"):
        sample(make_cfg("sample", [f"ckpt_path={ckpt}", "label=three"]))
    assert not (tmp_path / "no.png").exists()
    # an unconditional run logs no class match
    assert not any("class_match" in k for k in json.loads((tmp_path / "run" / "metrics.json").read_text()))


def test_a_conditional_image_grid_has_one_row_per_class(make_cfg, tmp_path):
    overrides = [*FAST, "experiment=digits_cgan", "model.width=8", "task.fid=false", "trainer.max_epochs=1"]
    overrides += [
        "callbacks.early_stopping=null",
        "callbacks.model_checkpoint=null",
        "trainer.limit_train_batches=2",
    ]
    train(make_cfg("train", [*overrides, "trainer.limit_val_batches=1", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    png, npy = tmp_path / "digits.png", tmp_path / "four.npy"
    line = sample(make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=16", f"output={png}"]))
    # 16 samples round up to 10 rows (digits 0-9) of 2, enlarged 4x (32 pixels) with 1-pixel gaps
    assert np.asarray(Image.open(png)).shape == (10 * 33 + 1, 2 * 33 + 1, 3) and "10 classes" in line
    sample(make_cfg("sample", [f"ckpt_path={ckpt}", "num_samples=5", f"output={npy}", "label=4"]))
    assert np.load(npy).shape == (5, 1, 8, 8)

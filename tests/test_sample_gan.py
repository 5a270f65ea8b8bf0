"""`lightsuite-sample` on GAN checkpoints: .npy arrays and .png pictures, and the errors a user can make."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST
from PIL import Image

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


def test_a_classifier_checkpoint_is_refused(make_cfg, tmp_path):
    short = [*FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    train(make_cfg("train", [*short, "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "x.png"
    with pytest.raises(ConfigError) as info:
        sample(make_cfg("sample", [f"ckpt_path={ckpt}", f"output={out}"]))
    assert str(info.value) == (
        f"ckpt_path={ckpt} is a checkpoint of ClassificationTask, which does not sample; "
        "lightsuite-sample takes checkpoints of generative tasks (task=gan, the character language model)"
    )
    assert not out.exists()

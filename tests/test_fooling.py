"""`lightsuite-sample ckpt_path=<classifier> output=fooling.png`: fooling images (Nguyen et al. 2015)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import FAST, RESNET8_DIGITS
from PIL import Image

from lightsuite.errors import ConfigError
from lightsuite.run.checkpoints import task_from_checkpoint
from lightsuite.sample import sample
from lightsuite.train import train

TINY = RESNET8_DIGITS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A ResNet-8 after three epochs of the digits (about 90% test accuracy); one epoch leaves it too
    unsure of itself for any image in [0, 1] to reach 99% (measured: 34% to 91% per class)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from lightsuite import CONFIG_DIR

    run = tmp_path_factory.mktemp("fooling_train")
    overrides = [*FAST, *TINY, "trainer.limit_val_batches=1", "test=false"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "+trainer.num_sanity_val_steps=0"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(run), str(run / "logs")
    GlobalHydra.instance().clear()
    train(cfg)
    return run / "checkpoints" / "last.ckpt"


def confidences(summary: str) -> dict[int, float]:
    return {int(c): float(p) for c, p in re.findall(r"(\d+): ([01]\.\d+)", summary)}


def test_fooling_images_are_classified_with_the_target_confidence(make_cfg, checkpoint, tmp_path):
    output = tmp_path / "fooling.png"
    summary = sample(make_cfg("sample", [f"ckpt_path={checkpoint}", f"output={output}"]))
    reached = confidences(summary)
    assert sorted(reached) == list(range(10)), summary
    assert min(reached.values()) >= 0.99, summary
    assert "below" not in summary
    # ten 8x8 digits enlarged 4x to 32x32, one pixel of padding around each
    with Image.open(output) as grid:
        assert grid.format == "PNG" and grid.size == (10 * 33 + 1, 34)
        pixels = torch.tensor(list(grid.convert("L").getdata()), dtype=torch.float32).view(34, 331)
    # the network's own verdict on the saved images (rounded to 8 bits): each its column's class
    task = task_from_checkpoint(str(checkpoint))
    tiles = [pixels[1:33, 1 + 33 * c : 33 + 33 * c][::4, ::4] for c in range(10)]
    images = torch.stack(tiles)[:, None] / 255
    with torch.no_grad():
        probs = task(task.pixel_scaling.to_input(images)).softmax(1)
    assert (probs.argmax(1) == torch.arange(10)).all(), probs.max(1)


def test_label_grows_the_fooling_image_of_that_class_alone(make_cfg, checkpoint, tmp_path):
    output = tmp_path / "three.png"
    summary = sample(make_cfg("sample", [f"ckpt_path={checkpoint}", f"output={output}", "label=3"]))
    assert list(confidences(summary)) == [3] and confidences(summary)[3] >= 0.99, summary
    with Image.open(output) as grid:
        assert grid.size == (32, 32)  # one 8x8 digit enlarged 4x (a grid of one has no padding)
    with pytest.raises(ConfigError, match="label=10 is out of range: this classifier knows classes 0 to 9"):
        sample(make_cfg("sample", [f"ckpt_path={checkpoint}", f"output={output}", "label=10"]))


def test_a_class_that_falls_short_is_reported(make_cfg, checkpoint, tmp_path):
    overrides = [f"ckpt_path={checkpoint}", f"output={tmp_path / 'f.png'}", "fooling_steps=1"]
    summary = sample(make_cfg("sample", [*overrides, "fooling_confidence=0.999999"]))
    assert re.search(r"classes \[[\d, ]+\] stayed below 0.999999 after 1 steps", summary), summary


def test_a_checkpoint_without_pixel_scaling_is_refused(make_cfg, checkpoint, tmp_path):
    old = torch.load(checkpoint, weights_only=True)
    del old["pixel_scaling"]  # as a checkpoint saved before fooling images existed
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ConfigError, match="records no pixel scaling"):
        sample(make_cfg("sample", [f"ckpt_path={tmp_path / 'old.ckpt'}", f"output={tmp_path / 'f.png'}"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("output=fooling.npy", "fooling images are a PNG grid"),
        ("fooling_confidence=1.5", "fooling_confidence=1.5 must be in"),
        ("fooling_steps=0", "fooling_steps=0 must be at least 1"),
    ],
)
def test_bad_fooling_options_are_config_errors(make_cfg, checkpoint, override, message):
    with pytest.raises(ConfigError, match=message):
        sample(make_cfg("sample", [f"ckpt_path={checkpoint}", override]))

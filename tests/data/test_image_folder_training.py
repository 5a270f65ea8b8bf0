"""Your own images end to end: an image tree trains an ImageNet-style ResNet through `train(cfg)`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST
from PIL import Image

from lightsuite.train import train


@pytest.mark.slow
def test_image_folder_trains_resnet18(make_cfg, tmp_path):
    rng = np.random.default_rng(0)
    for label, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        folder = tmp_path / "pictures" / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 20, size=(40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    overrides = [
        *FAST,
        "data=image_folder",
        f"data.path={tmp_path / 'pictures'}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model=resnet18",
        "trainer.max_epochs=2",
    ]
    metrics = train(make_cfg("train", overrides))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "val/acc_best" in metrics
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "ImageFolderDataModule" in saved

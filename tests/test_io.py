"""`lightsuite.io`: every writer leaves the whole new file or the old one, and never a temp file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightsuite import io


def test_each_writer_round_trips_and_leaves_only_its_file(tmp_path: Path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[1, 2] = (255, 0, 0)
    io.write_json(tmp_path / "a.json", {"x": 1.5})
    io.save_npy(array, tmp_path / "b.npy")
    io.save_torch({"w": torch.ones(2)}, tmp_path / "c.pt")
    io.save_png(image, tmp_path / "d.png")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.npy", "c.pt", "d.png"]
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1.5\n}\n'
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), array)
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.ones(2))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d.png")), image)


def test_a_write_that_fails_halfway_keeps_the_old_file(tmp_path: Path):
    path = io.write_text(tmp_path / "summary.json", "old\n")
    with pytest.raises(ValueError), io.replacing(path) as tmp:
        tmp.write_text("half of the new")
        raise ValueError("the writer failed")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_strict_json_refuses_nan_before_touching_the_file(tmp_path: Path):
    path = io.write_json(tmp_path / "m.json", {"a": 1.0})
    with pytest.raises(ValueError):
        io.write_json(path, {"a": float("nan")})
    assert path.read_text() == '{\n  "a": 1.0\n}\n'
    assert os.listdir(tmp_path) == ["m.json"]


def test_parent_folders_are_made(tmp_path: Path):
    assert io.write_text(tmp_path / "x" / "y" / "z.txt", "hi").read_text() == "hi"

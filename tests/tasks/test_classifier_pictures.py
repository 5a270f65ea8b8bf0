"""Pictures of a classifier's test set: the confusion matrix and the worst-classified images, in the run
dir and in the loggers, exact over DDP ranks; and the switch that turns them off."""

from __future__ import annotations

import csv
import functools
import io
import os
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from conftest import FAST, ONE_TINY_EPOCH
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassConfusionMatrix

from lightsuite.errors import exit_on_user_error
from lightsuite.run.build import build_run
from lightsuite.tasks.classification import ClassificationTask
from lightsuite.tasks.pictures import WorstImages
from lightsuite.train import train

# the digits' test set: a fixed draw of 360 of the 1,797 images (data/digits.py)
DIGITS_TEST_SIZE = 360


def brute_force_worst(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k samples whose label gets the lowest softmax probability, by sorting all of them."""
    probs = torch.softmax(logits.double(), dim=1)[torch.arange(len(labels)), labels]
    return torch.tensor(sorted(range(len(labels)), key=lambda i: probs[i].item())[:k])


def test_worst_images_are_the_k_lowest_true_class_probabilities_of_all_batches():
    torch.manual_seed(0)
    n, k = 53, 6
    logits, labels = torch.randn(n, 4) * 3, torch.randint(0, 4, (n,))
    # each image holds its own index, so the kept images say which samples were kept
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    worst = WorstImages(k)
    for start, size in ((0, 2), (2, 20), (22, 1), (23, 30)):  # batches smaller and larger than k
        rows = slice(start, start + size)
        worst.update(images[rows], logits[rows], labels[rows])
    got = worst.compute()
    expected = brute_force_worst(logits, labels, k)
    assert got["images"][:, 0, 0, 0].long().tolist() == expected.tolist()
    assert got["labels"].tolist() == labels[expected].tolist()
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(got["true_prob"], probs[expected, labels[expected]])
    assert got["preds"].tolist() == probs[expected].argmax(dim=1).tolist()
    assert torch.allclose(got["pred_prob"], probs[expected].max(dim=1).values)


def _rank(rank: int, port: int, logits: torch.Tensor, labels: torch.Tensor, k: int, out: str) -> None:
    """One of two gloo ranks: each updates with its own interleaved shard, then both compute."""
    torch.set_num_threads(1)  # two ranks on a shared machine
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1)
    worst, confusion = WorstImages(k), MulticlassConfusionMatrix(logits.shape[1])
    shard = slice(rank, None, 2)
    for part in torch.arange(len(labels))[shard].split(5):
        worst.update(images[part], logits[part], labels[part])
        confusion.update(logits[part].argmax(dim=1), labels[part])
    got = worst.compute()
    torch.save(
        {"kept": got["images"].flatten().long(), "matrix": confusion.compute()}, f"{out}/rank{rank}.pt"
    )
    dist.destroy_process_group()


def test_two_ddp_ranks_gather_the_whole_test_sets_matrix_and_worst_images(tmp_path):
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(1)
    n, k, classes = 41, 7, 5
    logits, labels = torch.randn(n, classes) * 2, torch.randint(0, classes, (n,))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawned, not forked: a fork of this many-threaded process (torch, the W&B service) can deadlock
    mp.start_processes(_rank, (port, logits, labels, k, str(tmp_path)), nprocs=2, start_method="spawn")
    expected_matrix = torch.zeros(classes, classes, dtype=torch.long)
    for true, pred in zip(labels.tolist(), logits.argmax(dim=1).tolist(), strict=True):
        expected_matrix[true, pred] += 1
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["kept"].tolist() == brute_force_worst(logits, labels, k).tolist()
        assert torch.equal(got["matrix"], expected_matrix)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One tiny digits run tested on its whole test set, logged to TensorBoard: its config, metrics, dir."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from lightsuite import CONFIG_DIR

    tmp = tmp_path_factory.mktemp("pictures")
    overrides = [*FAST, *ONE_TINY_EPOCH, "trainer.limit_test_batches=1.0", "logger=tensorboard"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "task.num_worst_images=5"])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp / "run"), str(tmp / "outputs")
    return cfg, train(cfg), tmp / "run"


def test_confusion_matrix_counts_every_test_image_and_its_diagonal_the_correct_ones(digits_run):
    _, metrics, run = digits_run
    rows = list(csv.reader((run / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", *map(str, range(10))]
    assert [r[0] for r in rows[1:]] == list(map(str, range(10)))
    matrix = torch.tensor([[int(c) for c in r[1:]] for r in rows[1:]])
    assert matrix.sum() == DIGITS_TEST_SIZE
    assert matrix.diagonal().sum() == round(metrics["test/acc"] * DIGITS_TEST_SIZE)
    # each true class's row holds that class's test images
    labels = build_run(digits_run[0])[0]
    labels.setup("test")
    assert matrix.sum(dim=1).tolist() == torch.bincount(labels.test_set.labels, minlength=10).tolist()


def test_worst_images_are_the_tested_networks_k_lowest_true_class_probabilities(digits_run):
    cfg, _, run = digits_run
    datamodule, task = build_run(cfg)
    best = next(p for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt")
    task.load_state_dict(torch.load(best, weights_only=True)["state_dict"])
    datamodule.setup("test")
    task.eval()
    with torch.no_grad():
        x = datamodule.transform_batch(datamodule.test_set.images, train=False)
        logits, labels = task(x), datamodule.test_set.labels
    expected = brute_force_worst(logits, labels, 5)
    probs = torch.softmax(logits, dim=1)
    rows = list(csv.DictReader((run / "worst_test_images.csv").open()))
    assert [int(r["true"]) for r in rows] == labels[expected].tolist()
    assert [float(r["true_prob"]) for r in rows] == pytest.approx(
        probs[expected, labels[expected]].tolist(), rel=1e-4
    )
    assert [int(r["predicted"]) for r in rows] == probs[expected].argmax(dim=1).tolist()
    for name in ("confusion_matrix.png", "worst_test_images.png"):
        with Image.open(run / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_pictures_reach_tensorboard(digits_run):
    _, _, run = digits_run
    events = EventAccumulator(str(next((run / "tensorboard").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert {"test/confusion_matrix", "test/worst_images"} <= set(events.Tags()["images"])
    (shown,) = events.Images("test/worst_images")
    with Image.open(run / "worst_test_images.png") as image:
        assert (shown.width, shown.height) == image.size


def _tiny_test(tmp_path: Path, **kwargs) -> list[str]:
    """A linear classifier of 2-D points tested by a bare Trainer writing into tmp_path: what it leaves."""
    task = ClassificationTask(
        nn.Linear(2, 3), optimizer=functools.partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs
    )
    points = DataLoader(TensorDataset(torch.randn(12, 2), torch.arange(12) % 3), batch_size=5)
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    tmp_path.mkdir()
    trainer.test(task, points, verbose=False)
    return sorted(p.name for p in tmp_path.iterdir())


def test_test_pictures_false_draws_nothing(tmp_path):
    assert _tiny_test(tmp_path / "off", test_pictures=False) == []
    # inputs that are not images get their confusion matrix only
    assert _tiny_test(tmp_path / "on") == ["confusion_matrix.csv", "confusion_matrix.png"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.num_worst_images=0", "error: task.num_worst_images=0 must be at least 1"),
        ("task.test_pictures=maybe", "error: task.test_pictures="),
    ],
)
def test_bad_picture_settings_are_one_line_before_any_work(make_cfg, tmp_path, override, message):
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(make_cfg("train", [*FAST, override]))
    assert exit_info.value.code == 1
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith(message), err.getvalue()
    assert not (tmp_path / "run" / "checkpoints").exists()

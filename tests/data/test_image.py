"""The shared image DataModule: in-memory loaders, splits, and device-side scaling and augmentation."""

import math
from collections import Counter

import pytest
import pytorch_lightning as pl
import torch
from data_helpers import crop_offsets, make_trainer, write_mnist
from hydra.utils import instantiate
from torch import nn

from lightsuite.data.digits import DigitsDataModule
from lightsuite.errors import ConfigError


def ready(make_cfg, *overrides: str):
    dm = instantiate(make_cfg("train", list(overrides)).data)
    dm.setup("fit")
    return dm


def keys(images: torch.Tensor) -> list[bytes]:
    return [image.numpy().tobytes() for image in images]


def test_train_loader_covers_every_training_image_once_per_epoch_in_whole_batches(make_cfg):
    torch.manual_seed(0)
    dm = ready(make_cfg, "data=digits", "data.batch_size=64")
    loader = dm.train_dataloader()
    n = len(dm.train_set)
    assert len(loader) == math.ceil(n / 64) == 20

    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # Lightning's call at each epoch start
        batches = list(loader)
        assert [len(x) for x, _ in batches] == [64] * 19 + [n - 19 * 64]
        images = torch.cat([x for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        assert Counter(keys(images)) == Counter(keys(dm.train_set.images))
        # each image keeps its own label
        by_image = dict(zip(keys(dm.train_set.images), dm.train_set.labels.tolist(), strict=True))
        assert [by_image[k] for k in keys(images)] == labels.tolist()
        epochs.append(keys(images))
    assert epochs[0] != keys(dm.train_set.images)
    assert epochs[0] != epochs[1]
    # the order is a function of (seed, epoch): a resumed run sees the batches it would have seen
    loader.sampler.set_epoch(0)
    assert keys(torch.cat([x for x, _ in loader])) == epochs[0]


def test_eval_loaders_keep_order_and_use_eval_batch_size(make_cfg):
    dm = ready(make_cfg, "data=digits", "data.batch_size=16", "data.eval_batch_size=50")
    for loader, split in ((dm.val_dataloader(), dm.val_set), (dm.test_dataloader(), dm.test_set)):
        batches = list(loader)
        assert [len(x) for x, _ in batches[:-1]] == [50] * (len(batches) - 1)
        assert torch.equal(torch.cat([x for x, _ in batches]), split.images)
        assert torch.equal(torch.cat([y for _, y in batches]), split.labels)


@pytest.fixture
def mnist_dm(make_cfg, tmp_path):
    """Fake MNIST, with flips on as well as the config's 2-pixel crops, and a real Trainer attached."""
    write_mnist(tmp_path / "data")
    dm = ready(make_cfg, "data=mnist", "data.val_size=4", "data.batch_size=16", "data.hflip=true")
    dm.trainer = make_trainer()
    return dm


def normalized(dm, x: torch.Tensor) -> torch.Tensor:
    return (x - dm.mean.view(1, -1, 1, 1)) / dm.std.view(1, -1, 1, 1)


def test_training_batches_are_augmented_and_eval_batches_are_exact(mnist_dm):
    torch.manual_seed(0)
    dm, trainer = mnist_dm, mnist_dm.trainer
    images, labels = next(iter(dm.train_dataloader()))
    exact = normalized(dm, images.float() / 255)

    trainer.training = True
    first, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    second, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(out_labels, labels)
    assert first.shape == images.shape and first.dtype == torch.float32
    assert not torch.equal(first, second)
    assert not torch.allclose(first, exact)
    # every image is a zero-filled shift of the scaled pixels, or of their mirror, normalized afterwards
    unit = images.float() / 255
    for out in (first, second):
        plain = crop_offsets(out, unit, dm.padding, lambda x: normalized(dm, x))
        mirror = crop_offsets(out, unit.flip(-1), dm.padding, lambda x: normalized(dm, x))
        assert all(p is not None or m is not None for p, m in zip(plain, mirror, strict=True))

    for stage in ("validating", "testing"):
        setattr(trainer, stage, True)
        assert not trainer.training
        once, _ = dm.on_after_batch_transfer((images, labels), 0)
        twice, _ = dm.on_after_batch_transfer((images, labels), 0)
        torch.testing.assert_close(once, exact)
        assert torch.equal(once, twice)

    dm.trainer = None
    torch.testing.assert_close(dm.on_after_batch_transfer((images, labels), 0)[0], exact)


def test_augment_false_turns_augmentation_off(make_cfg, tmp_path):
    # `augment` is not in the data configs, so the override needs a `+`
    write_mnist(tmp_path / "data")
    dm = ready(make_cfg, "data=mnist", "data.val_size=4", "data.hflip=true", "data.augment=false")
    dm.trainer = make_trainer()
    dm.trainer.training = True
    images, labels = next(iter(dm.train_dataloader()))
    out, _ = dm.on_after_batch_transfer((images, labels), 0)
    torch.testing.assert_close(out, normalized(dm, images.float() / 255))


def test_digits_float_pixels_are_taken_as_scaled_and_still_augmented(make_cfg):
    torch.manual_seed(0)
    dm = ready(make_cfg, "data=digits")
    dm.trainer = make_trainer()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.float32 and images.max() <= 1

    dm.trainer.validating = True
    torch.testing.assert_close(dm.on_after_batch_transfer((images, labels), 0)[0], normalized(dm, images))

    dm.trainer.training = True
    first, _ = dm.on_after_batch_transfer((images, labels), 0)
    second, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert not torch.equal(first, second)
    # digits shift by up to `padding: 1` and are never mirrored
    assert None not in crop_offsets(first, images, 1, lambda x: normalized(dm, x))


class BatchProbe(pl.LightningModule):
    """Records each batch as the loader gave it and as the step received it; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.raw = torch.empty(0)
        self.seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.raw = batch[0].clone()
        return batch

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", self.raw, batch[0]))
        return self.weight * 0

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", self.raw, batch[0]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.filterwarnings("ignore:You have overridden")  # the probe's hook, on purpose
def test_a_real_fit_augments_training_batches_only(make_cfg):
    torch.manual_seed(0)
    dm = instantiate(make_cfg("train", ["data=digits"]).data)
    probe = BatchProbe()
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
    )
    trainer.fit(probe, datamodule=dm)

    # the sanity check and the epoch's validation, then the two training steps between them
    assert [stage for stage, _, _ in probe.seen] == ["val", "train", "train", "val"]
    for stage, raw, x in probe.seen:
        if stage == "val":
            torch.testing.assert_close(x, normalized(dm, raw))
        else:
            offsets = crop_offsets(x, raw, dm.padding, lambda x: normalized(dm, x))
            assert None not in offsets
            assert any(offset != (0, 0) for offset in offsets)


def test_val_size_that_leaves_no_training_data_is_a_config_error(make_cfg):
    dm = instantiate(make_cfg("train", ["data=digits", "data.val_size=1437"]).data)
    with pytest.raises(ConfigError, match=r"data\.val_size=1437"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"batch_size": 0}, "data.batch_size"), ({"padding": -1}, "data.padding")]
)
def test_bad_loader_settings_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        DigitsDataModule(**kwargs)


def test_symmetric_pixels_serve_gans_in_minus_one_to_one(make_cfg):
    """`data.pixels=symmetric` maps [0, 1] onto [-1, 1]; the default stays standardized for classifiers."""
    sym = ready(make_cfg, "data=digits", "data.pixels=symmetric", "data.augment=false")
    std = ready(make_cfg, "data=digits", "data.augment=false")
    raw, _ = next(iter(sym.val_dataloader()))
    x = sym.transform_batch(raw, train=False)
    assert torch.allclose(x, raw * 2 - 1)
    assert x.min() == -1.0 and x.max() == 1.0
    standardized = std.transform_batch(raw, train=False)
    assert torch.allclose(standardized, (raw - std.mean.view(1, -1, 1, 1)) / std.std.view(1, -1, 1, 1))
    with pytest.raises(ConfigError, match="standardized, symmetric"):
        DigitsDataModule(pixels="tanh")

"""In-memory sets held on the training device: where they go, and that batches and their order do not change.

Without a GPU the training device is the CPU, so a fit can only show that the splits sit on
`trainer.strategy.root_device` (cpu) and that the batches keep their order; where the data would go
on a GPU is checked on the decision (`resident_device`) with CUDA devices named, not used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST

from lightsuite.data.adding import AddingDataModule
from lightsuite.data.batches import DictBatches
from lightsuite.data.digits import DigitsDataModule
from lightsuite.data.gaussians import GaussiansDataModule
from lightsuite.data.image import BatchIndices, TensorBatches, resident_device
from lightsuite.train import train

# two epochs of two training batches: the second epoch's order is drawn anew
TWO_SHORT_EPOCHS = [
    *FAST,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "callbacks.early_stopping=null",
    "seed=3",
]
PROBE = ["+callbacks.probe._target_=test_device_resident.Probe"]


class Probe(pl.Callback):
    """Writes `<run dir>/probe.json`: where the splits and a fresh loader's batch are; each step's labels."""

    def __init__(self) -> None:
        self.steps: list[list[int]] = []
        self.where: dict[str, str] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        images, _ = next(iter(dm.train_dataloader()))  # as the loader hands it over, before transfer
        self.where = {
            "root": str(trainer.strategy.root_device),
            **{name: str(getattr(dm, name).images.device) for name in ("train_set", "val_set", "test_set")},
            "batch": str(images.device),
        }
        self.train_labels = dm.train_set.labels.tolist()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.steps.append(batch[1].tolist())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {"where": self.where, "steps": self.steps, "train_labels": self.train_labels}
        (Path(trainer.default_root_dir) / "probe.json").write_text(json.dumps(record))


def expected_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """An epoch's shuffled order, written out from its definition: a randperm seeded by (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1_000_003 * epoch))


def test_resident_device_is_the_training_device_only_where_this_process_indexes_the_data():
    gpu = torch.device("cuda", 1)  # named, never used: no GPU is needed to decide
    assert resident_device(gpu) == gpu
    assert resident_device(torch.device("cpu")) == torch.device("cpu")
    assert resident_device(None) == torch.device("cpu")  # no trainer: a loader built by hand
    assert resident_device(gpu, num_workers=2) == torch.device("cpu")  # workers cannot index CUDA tensors
    assert resident_device(gpu, enabled=False) == torch.device("cpu")


def test_moving_a_set_to_the_device_it_is_on_copies_nothing():
    data = TensorBatches(torch.rand(6, 1, 2, 2), torch.arange(6))
    assert data.to(torch.device("cpu")) is data
    moved = data.to(torch.device("cpu"))
    assert moved.images.data_ptr() == data.images.data_ptr() and moved.device == torch.device("cpu")


@pytest.mark.parametrize("ranks", [1, 2])
def test_batch_indices_on_a_device_keep_the_order_and_come_on_that_device(ranks):
    for rank in range(ranks):
        plain = BatchIndices(50, 8, True, seed=7, num_replicas=ranks, rank=rank)
        placed = BatchIndices(50, 8, True, seed=7, num_replicas=ranks, rank=rank, device=torch.device("cpu"))
        for sampler in (plain, placed):
            sampler.set_epoch(3)
        got = list(placed)
        assert [b.tolist() for b in got] == [b.tolist() for b in plain]
        assert all(b.device == torch.device("cpu") for b in got)
        # rank r's share of global batch k, from the definition
        order = expected_order(50, 7, 3).split(8 * ranks)
        shares = [b.tensor_split(ranks)[rank].tolist() for b in order if len(b) >= ranks]
        assert [b.tolist() for b in got] == [s for s in shares if s]


def test_a_digits_fit_holds_its_splits_on_the_training_device_in_the_same_order(make_cfg, tmp_path):
    metrics = train(make_cfg("train", [*TWO_SHORT_EPOCHS, *PROBE], run_dir=tmp_path / "on"))
    probe = json.loads((tmp_path / "on" / "probe.json").read_text())
    where = probe["where"]
    assert where["root"] == "cpu"  # all a CPU machine can show: the splits follow root_device
    assert {where[k] for k in ("train_set", "val_set", "test_set", "batch")} == {where["root"]}
    labels = torch.tensor(probe["train_labels"])
    batch = 64  # conf/data/digits.yaml
    expected = [labels[expected_order(len(labels), 3, epoch)[k * batch : (k + 1) * batch]].tolist()
                for epoch in (0, 1) for k in (0, 1)]  # fmt: skip
    assert probe["steps"] == expected
    # the same run with the data left on the host: the same metrics.json
    off = train(
        make_cfg("train", [*TWO_SHORT_EPOCHS, "data.device_resident=false"], run_dir=tmp_path / "off")
    )
    assert off == metrics
    on_file = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert on_file == json.loads((tmp_path / "off" / "metrics.json").read_text())


def test_loaders_with_workers_keep_host_tensors_and_use_the_workers():
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    dm = DigitsDataModule(num_workers=2, val_size=180)
    dm.trainer = trainer
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert dm.train_set.device == torch.device("cpu")
    assert loader.num_workers == 2 and not loader.pin_memory  # pinning is for a CUDA trainer
    in_process = DigitsDataModule(val_size=180)
    in_process.trainer = trainer
    in_process.setup("fit")
    assert in_process.train_dataloader().num_workers == 0


def test_gaussians_follow_the_trainer_and_keep_their_order():
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    dm = GaussiansDataModule(num_train=100, num_val=10, num_test=10, batch_size=32)
    dm.trainer = trainer
    dm.setup("fit")
    root = trainer.strategy.root_device
    assert {data.device for data in dm.sets.values()} == {root}
    points, labels = next(iter(dm.train_dataloader()))
    assert points.device == root
    first = expected_order(100, 0, 0)[:32]  # BatchIndices' default seed 0, epoch 0
    assert torch.equal(points, dm.sets["train"].images[first])
    assert torch.equal(labels, dm.sets["train"].labels[first])


def test_a_group_is_one_gather_holding_the_batches_of_separate_gathers():
    tensors = {"x": torch.randn(40, 3), "y": torch.arange(40)}
    index = [torch.tensor([3, 1, 4]), torch.tensor([15, 9]), torch.tensor([2])]
    group = DictBatches(tensors)[index]
    assert len(group) == 3
    for part, batch in zip(index, group, strict=True):
        assert batch.keys() == tensors.keys()
        assert all(torch.equal(batch[key], tensors[key][part]) for key in tensors)


def test_sequence_sets_follow_the_trainer_and_skip_only_a_transfer_to_where_they_are():
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    sizes = {"num_train": 64, "num_val": 16, "num_test": 16, "seq_len": 6, "batch_size": 8}
    dm = AddingDataModule(**sizes, batches_per_step=2)
    dm.trainer = trainer
    dm.setup("fit")
    root = trainer.strategy.root_device
    assert dm.data_device == root
    assert {t.device for split in dm.sets.values() for t in split.values()} == {root}
    group = next(iter(dm.train_dataloader()))
    assert len(group) == 2 and all(batch["x"].shape == (8, 6, 2) for batch in group)
    assert dm.transfer_batch_to_device(group, root, 0) is group
    # to any other device, Lightning's own transfer: here "meta", which needs no hardware
    moved = dm.transfer_batch_to_device(group, torch.device("meta"), 0)
    assert all(t.device.type == "meta" for batch in moved for t in batch.values())
    # left on the host, the same batches in the same order
    host = AddingDataModule(**sizes, batches_per_step=2, device_resident=False)
    host.trainer = trainer
    host.setup("fit")
    for a, b in zip(dm.train_dataloader(), host.train_dataloader(), strict=True):
        assert all(torch.equal(x[key], y[key]) for x, y in zip(a, b, strict=True) for key in x)


def test_a_grouped_epoch_is_one_gather_and_its_groups_the_batches_of_separate_gathers():
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    sizes = {"num_train": 70, "num_val": 16, "num_test": 16, "seq_len": 5, "batch_size": 8}
    dm = AddingDataModule(**sizes, batches_per_step=4)
    dm.trainer = trainer
    dm.setup("fit")
    loader = dm.train_dataloader()
    train = dm.sets["train"]
    for epoch in range(2):
        groups = list(loader)
        assert [len(group) for group in groups] == [4, 4, 1]  # 9 batches: 8 full and one of 6
        batches = [batch for group in groups for batch in group]
        order = torch.randperm(70, generator=torch.Generator().manual_seed(loader.sampler.seed + epoch))
        for part, batch in zip(order.split(8), batches, strict=True):
            assert batch.keys() == train.keys()
            assert all(torch.equal(batch[key], train[key][part]) for key in train)
        # every batch of the epoch is a view of one gathered tensor per key
        assert len({batch["x"].untyped_storage().data_ptr() for batch in batches}) == 1

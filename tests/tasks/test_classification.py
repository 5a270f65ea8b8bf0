"""The classification task: loss, label smoothing, metrics, optimizer wiring."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightsuite.errors import ConfigError
from lightsuite.models.resnet import resnet20
from lightsuite.tasks.classification import ClassificationTask


def make_task(**kwargs) -> ClassificationTask:
    net = resnet20(input_shape=(1, 8, 8), num_classes=10)
    return ClassificationTask(net, optimizer=functools.partial(torch.optim.SGD, lr=0.1), **kwargs)


def test_label_smoothing_changes_the_loss():
    torch.manual_seed(0)
    batch = (torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    plain, smooth = make_task(), make_task(label_smoothing=0.2)
    smooth.net.load_state_dict(plain.net.state_dict())
    plain.eval(), smooth.eval()
    assert plain._step(batch)[0].item() != pytest.approx(smooth._step(batch)[0].item())


def test_label_smoothing_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="label_smoothing"):
        make_task(label_smoothing=1.5)


def test_num_classes_from_the_network_sets_top5():
    task = make_task()
    assert task.val_acc.names == ["acc", "acc_top5"]
    small = ClassificationTask(
        resnet20(input_shape=(1, 8, 8), num_classes=3), optimizer=functools.partial(torch.optim.SGD, lr=0.1)
    )
    assert small.val_acc.names == ["acc"]


def test_network_without_num_classes_needs_it_in_config():
    with pytest.raises(ConfigError, match="num_classes"):
        ClassificationTask(nn.Linear(4, 2), optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    ClassificationTask(nn.Linear(4, 2), optimizer=functools.partial(torch.optim.SGD, lr=0.1), num_classes=2)


def test_sanity_check_never_counts_as_the_best_epoch(tmp_path):
    """The net starts perfect and training on shifted labels ruins it: only the sanity check sees 100%."""
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    y = torch.arange(32) % 4
    x = nn.functional.one_hot(y, 4).float()
    net = nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.copy_(torch.eye(4)), net.bias.zero_()
    task = ClassificationTask(net, optimizer=functools.partial(torch.optim.SGD, lr=5.0), num_classes=4)
    trainer = pl.Trainer(
        max_epochs=2,
        num_sanity_val_steps=2,
        log_every_n_steps=1,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    shifted = DataLoader(TensorDataset(x, (y + 1) % 4), batch_size=4)
    trainer.fit(task, shifted, DataLoader(TensorDataset(x, y), batch_size=4))

    rows = list(csv.DictReader((Path(trainer.logger.log_dir) / "metrics.csv").open()))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val_acc) == 2 and max(val_acc) < 0.5, val_acc  # the premise: training made it worse
    best = [float(r["val/acc_best"]) for r in rows if r.get("val/acc_best")]
    assert best == pytest.approx([val_acc[0], max(val_acc)])
    # and the value a checkpoint carries into a resumed run
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["val_acc_best.max_value"]
    assert saved.item() == pytest.approx(max(val_acc))

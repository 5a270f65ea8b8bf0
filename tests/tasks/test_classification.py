"""The classification task: loss, label smoothing, metrics, optimizer wiring."""

from __future__ import annotations

import functools

import pytest
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

"""Lesion study (`lesion=blocks`): a deleted block really is skipped, the rest is untouched, and the
study's metrics, tables and figure come out of `lightsuite-eval` for a ResNet's plain twin."""

from __future__ import annotations

import copy
import csv
import json
from functools import partial

import pytest
import torch
from conftest import FAST, ONE_TINY_EPOCH
from torch import nn

from lightsuite.errors import ConfigError
from lightsuite.eval import evaluate
from lightsuite.models import resnet as R
from lightsuite.run.lesion import LesionStudy, block_sites, deleted
from lightsuite.tasks.classification import ClassificationTask
from lightsuite.tasks.sequence_regression import SequenceRegressionTask
from lightsuite.train import train

DIGIT = (1, 8, 8)


def trained_like(net: nn.Module) -> nn.Module:
    """Random BN statistics, so that no block is close to identity by accident; eval mode."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2), m.bias.data.normal_(0, 0.1)
    return net.eval()


def test_a_deleted_block_never_runs_and_is_put_back_exactly():
    net = trained_like(R.resnet20(input_shape=DIGIT))
    x = torch.randn(5, *DIGIT)
    before = net(x)
    site = {s.name: s for s in block_sites(net)}["stage2.block2"]
    calls = []
    site.block.register_forward_hook(lambda *_: calls.append("block"))
    site.block.conv1.register_forward_hook(lambda *_: calls.append("conv1"))
    with deleted([site]):
        lesioned = net(x)
    assert calls == []
    assert not torch.allclose(lesioned, before)
    assert net.layer2[1] is site.block
    assert torch.equal(net(x), before) and calls == ["conv1", "block"]


@pytest.mark.parametrize("name", ["stage1.block2", "stage2.block1", "stage3.block3"])
@pytest.mark.parametrize("options", [{}, {"shortcut": "B"}, {"shortcut": "B", "preact": True}])
def test_deleting_a_residual_block_equals_silencing_its_branch(name, options):
    # an independent route to the same network: the branch's last layer zeroed makes it output 0
    net = trained_like(R.cifar_resnet(20, input_shape=DIGIT, **options))
    silenced = copy.deepcopy(net)
    layer = {s.name: s for s in block_sites(silenced)}[name].block.last_branch_layer()
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    x = torch.randn(5, *DIGIT)
    with deleted([{s.name: s for s in block_sites(net)}[name]]):
        torch.testing.assert_close(net(x), silenced(x))


def test_deleting_a_plain_block_removes_it_and_shape_changing_ones_are_not_deletable():
    net = trained_like(R.plain20(input_shape=DIGIT))
    sites = {s.name: s for s in block_sites(net)}
    assert [n for n, s in sites.items() if not s.block.deletable] == ["stage2.block1", "stage3.block1"]
    removed = copy.deepcopy(net)
    removed.layer3 = nn.Sequential(removed.layer3[0], removed.layer3[2])
    x = torch.randn(5, *DIGIT)
    with deleted([sites["stage3.block2"]]):
        torch.testing.assert_close(net(x), removed(x))
    with pytest.raises(ValueError, match="cannot be deleted"), deleted([sites["stage2.block1"]]):
        pass


def test_refusals_name_the_key_or_the_reason():
    for options, key in (({"samples": 0}, "lesion.samples=0"), ({"random_k": 0}, "lesion.random_k=0")):
        with pytest.raises(ConfigError, match=key):
            LesionStudy(**options)
    sgd = partial(torch.optim.SGD, lr=0.1)
    with pytest.raises(ConfigError, match="studies image classifiers, not a SequenceRegressionTask"):
        LesionStudy().check(SequenceRegressionTask(R.resnet20(), sgd))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ConfigError, match="Sequential has none"):
        LesionStudy().check(ClassificationTask(mlp, sgd, num_classes=10))
    with pytest.raises(ConfigError, match="more than the 7 deletable blocks"):
        LesionStudy(random_k=8).check(ClassificationTask(R.plain20(), sgd))


def test_eval_writes_the_study_of_a_plain_net(make_cfg, tmp_path):
    # eight steps: far from trained, but no longer one class for every image, so lesions show
    tiny = [o for o in ONE_TINY_EPOCH if "limit_train" not in o] + ["trainer.limit_train_batches=8"]
    train(make_cfg("train", [*FAST, *tiny, "model=plain20"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    study = ["lesion=blocks", "lesion.random_k=2", "lesion.samples=2", "lesion.limit_batches=2"]
    out = tmp_path / "eval"
    cfg = make_cfg("eval", [f"ckpt_path={ckpt}", *study, "trainer.limit_test_batches=2"], run_dir=out)
    metrics = evaluate(cfg)

    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    # the study sees the test batches the Trainer tested, scaled the same way
    assert metrics["lesion/acc_intact"] == pytest.approx(metrics["test/acc"])
    single = {k.removeprefix("lesion/acc_without_"): v for k, v in metrics.items() if "without" in k}
    assert len(single) == 7 and "stage2.block1" not in single
    drops = [metrics["lesion/acc_intact"] - v for v in single.values()]
    assert metrics["lesion/mean_drop"] == pytest.approx(sum(drops) / 7)
    assert metrics["lesion/max_drop"] == pytest.approx(max(drops))
    assert min(single.values()) <= metrics["lesion/acc_random_k1"] <= max(single.values())
    assert "lesion/acc_random_k2" in metrics
    rows = list(csv.DictReader((out / "lesion.csv").open()))
    assert len(rows) == 10 and rows[4]["deleted"] == "stage2.block1"
    assert rows[4]["test_acc"].startswith("not deletable")
    assert "| stage3.block1 | not deletable" in (out / "lesion.md").read_text()
    assert len(list(csv.DictReader((out / "lesion_random.csv").open()))) == 2
    assert (out / "lesion.png").read_bytes()[:4] == b"\x89PNG"

    # a wrong option is refused before any work, with the key named
    bad = make_cfg(
        "eval", [f"ckpt_path={ckpt}", "lesion=blocks", "lesion.samples=0"], run_dir=tmp_path / "bad"
    )
    with pytest.raises(Exception) as refused:
        evaluate(bad)
    assert "lesion.samples=0 must be at least 1" in str(refused.value)
    assert not (tmp_path / "bad" / "metrics.json").exists()

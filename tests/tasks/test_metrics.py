"""TopKAccuracy agrees with torchmetrics' MulticlassAccuracy for every k, across batches."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from lightsuite.tasks.metrics import TopKAccuracy


@pytest.mark.parametrize("num_classes", [3, 10, 100])
def test_matches_torchmetrics_micro_accuracy(num_classes):
    torch.manual_seed(num_classes)
    ks = [k for k in (1, 2, 5) if k <= num_classes]
    ours = TopKAccuracy(ks)
    ref = {k: MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in ks}
    for size in (17, 64, 3):
        logits, target = torch.randn(size, num_classes), torch.randint(0, num_classes, (size,))
        # make some top-1 guesses right so the figures are not all near chance
        logits[: size // 3].scatter_(1, target[: size // 3, None], 10.0)
        ours.update(logits, target)
        for metric in ref.values():
            metric.update(logits, target)
    got = ours.compute()
    for k, metric in ref.items():
        name = "acc" if k == 1 else f"acc_top{k}"
        assert got[name].item() == pytest.approx(metric.compute().item())
    assert got["acc"] < got[f"acc_top{ks[-1]}"] or ks == [1]


def test_reset_and_empty():
    metric = TopKAccuracy((1, 5))
    metric.update(torch.eye(10), torch.arange(10))
    assert metric.compute()["acc"].item() == 1.0
    metric.reset()
    metric.update(torch.eye(10), (torch.arange(10) + 1) % 10)
    assert metric.compute()["acc"].item() == 0.0


def test_bad_k():
    with pytest.raises(ValueError, match="positive"):
        TopKAccuracy((0, 1))


def test_loss_mean_is_torchmetrics_mean_to_the_bit_nans_included():
    from torchmetrics import MeanMetric

    from lightsuite.tasks.metrics import LossMean

    ours, theirs = LossMean(), MeanMetric(nan_strategy="disable")
    generator = torch.Generator().manual_seed(0)
    for size in (8, 3, 8, 1, 5):
        losses = torch.rand(size, generator=generator) * 10
        ours.update(losses)
        theirs.update(losses)
    assert torch.equal(ours.compute(), theirs.compute())
    assert ours.weight.item() == 25
    ours.update(torch.tensor([1.0, float("nan")]))
    assert ours.compute().isnan()
    ours.reset()
    ours.update(torch.tensor([2.0, 4.0]))
    assert ours.compute().item() == 3.0

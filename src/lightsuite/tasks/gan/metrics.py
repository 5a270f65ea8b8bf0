"""Offline GAN metrics: mode coverage for point sets, class confidence for images (FID is torchmetrics'),
and for conditional generators the share of samples of the class asked for."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ModeCoverage(Metric):
    """How many modes of a mixture the samples cover, and how many samples are high quality.

    A sample is high quality when it lies within `within` (3) standard deviations of some mode; a
    mode is covered when at least `min_share` (1%) of all samples are high-quality samples of it.
    """

    full_state_update = False

    def __init__(self, modes: Tensor, std: float, within: float = 3.0, min_share: float = 0.01) -> None:
        super().__init__()
        self.register_buffer("modes", modes.float().clone(), persistent=False)
        self.radius, self.min_share = within * std, min_share
        self.add_state("per_mode", default=torch.zeros(len(modes)), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        dist, nearest = torch.cdist(samples.float(), self.modes).min(dim=1)
        near = dist <= self.radius
        self.per_mode += torch.bincount(nearest[near], minlength=len(self.modes)).float()
        self.total += len(samples)

    def compute(self) -> dict[str, Tensor]:
        covered = (self.per_mode >= self.min_share * self.total).sum().float()
        return {"modes_covered": covered, "hq_ratio": self.per_mode.sum() / self.total.clamp_min(1)}


class ClassConfidence(Metric):
    """Share of samples a classifier is confident about (max probability >= `threshold`) and the class spread.

    `class_share_min` / `class_share_max` are the smallest and largest share of samples given to
    one class (argmax): 1/C each for a generator that covers every class equally, 0 and 1 for a
    collapsed one.
    """

    full_state_update = False

    def __init__(self, num_classes: int, threshold: float = 0.9) -> None:
        super().__init__()
        self.threshold = threshold
        self.add_state("confident", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, logits: Tensor) -> None:
        probs = logits.float().softmax(dim=1)
        top, label = probs.max(dim=1)
        self.confident += (top >= self.threshold).sum()
        self.counts += torch.bincount(label, minlength=self.counts.numel()).float()

    def compute(self) -> dict[str, Tensor]:
        total = self.counts.sum().clamp_min(1)
        shares = self.counts / total
        return {
            "class_confidence": self.confident / total,
            "class_share_min": shares.min(),
            "class_share_max": shares.max(),
        }


class ClassMatch(Metric):
    """How often a conditional generator draws the class it was asked for, as a judge sees it.

    `class_match_k` is the share of the samples generated for label k that the judge (the suite's
    classifier for images, the nearest mode for mixtures) assigns to k; `class_match` is their mean
    over the labels asked for. Chance is 1/K for a generator that ignores its label.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("hits", default=torch.zeros(num_classes), dist_reduce_fx="sum")
        self.add_state("asked", default=torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, judged: Tensor, labels: Tensor) -> None:
        size = self.asked.numel()
        self.hits += torch.bincount(labels[judged == labels], minlength=size).float()
        self.asked += torch.bincount(labels, minlength=size).float()

    def compute(self) -> dict[str, Tensor]:
        asked = self.asked > 0
        shares = self.hits / self.asked.clamp_min(1)
        out = {"class_match": shares[asked].mean()}
        out.update({f"class_match_{k}": shares[k] for k in range(len(shares)) if asked[k]})
        return out

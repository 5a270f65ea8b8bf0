"""The offline judges of a GAN's samples: mode coverage (2-D mixtures) and FID + class confidence (images);
for a conditional generator at test time, the share of samples of the class asked for (`class_match`).

Held by the task as a plain object, not a module: the FID feature network is a frozen classifier of
the real data and must not end up in the GAN's checkpoints or optimizers, nor be switched to
training mode with the task.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from lightsuite.errors import ConfigError
from lightsuite.tasks.gan.fid import FeatureClassifier, FeatureSource, FIDRecipe
from lightsuite.tasks.gan.metrics import ClassConfidence, ClassMatch, ModeCoverage


def _default_classifier() -> Callable[..., nn.Module]:
    from lightsuite.models.resnet import resnet20

    return partial(resnet20)


class GANEvaluation:
    """Built at fit start from the DataModule (`prepare` on rank 0, then `build`), fed real batches,
    asked for a stage's metrics. `features` gets the FID classifier (run code supplies it)."""

    def __init__(
        self,
        fid: bool = True,
        classifier: Callable[..., nn.Module] | None = None,
        classifier_ckpt: str | None = None,
        classifier_dir: str | None = None,
        classifier_epochs: int = 10,
        num_reference: int = 2000,
        inception_weights: str | None = None,
        features: FeatureSource | None = None,
    ) -> None:
        self.fid, self.features = fid, features
        self.recipe = FIDRecipe(
            classifier or _default_classifier(), classifier_ckpt, classifier_dir, classifier_epochs
        )
        self.inception_weights, self.num_reference = inception_weights, num_reference
        self.modes: Tensor | None = None
        self.std = 0.0
        self.feature_net: FeatureClassifier | None = None
        self.device = torch.device("cpu")
        self.stages: dict[str, dict[str, Any]] = {}
        # FID of `num_reference` real training images against the real val images:
        # the floor a perfect generator would reach
        self.reference: FrechetInceptionDistance | None = None
        self.reference_value: float | None = None
        self.reference_seen = 0

    def save_modes(self, checkpoint: dict[str, Any]) -> None:
        """The true modes of a 2-D mixture into a checkpoint: a scatter plot from it alone shows them."""
        if self.modes is not None:
            checkpoint["gan_modes"] = {"modes": self.modes.tolist(), "std": self.std}

    def load_modes(self, checkpoint: dict[str, Any]) -> None:
        if "gan_modes" in checkpoint:
            self.modes = torch.tensor(checkpoint["gan_modes"]["modes"])
            self.std = float(checkpoint["gan_modes"]["std"])

    def _wants_classifier(self, datamodule: Any, sample_shape: tuple[int, ...]) -> bool:
        """Whether this data is scored with the FID classifier; refuses settings that cannot work."""
        if datamodule is None or hasattr(datamodule, "modes") or len(sample_shape) != 3:
            return False
        if getattr(datamodule, "pixels", "symmetric") != "symmetric":
            raise ConfigError(
                "task=gan generates pixels in [-1, 1] (tanh): set data.pixels=symmetric for image GANs"
            )
        if not self.fid:
            return False
        if self.inception_weights is not None:
            _check_inception(self.inception_weights)
        if self.features is None:
            raise ConfigError(
                "task.fid=true needs the FID step as `fid_features`: build the task with "
                "lightsuite.run.build.build_run (lightsuite-train does), or set task.fid=false"
            )
        return True

    def prepare(
        self, datamodule: Any, sample_shape: tuple[int, ...], device: torch.device, run_dir: str | None
    ) -> None:
        """Train and cache the FID classifier where the recipe needs one: once per run, on global rank 0."""
        if self.feature_net is None and self._wants_classifier(datamodule, sample_shape):
            self.features.prepare(self.recipe, datamodule, device, run_dir)

    def build(
        self,
        datamodule: Any,
        sample_shape: tuple[int, ...],
        device: torch.device,
        run_dir: str | None = None,
        world_size: int = 1,
    ) -> None:
        """Take the true modes (mixtures) or load the FID classifier (images); once per task, every rank."""
        self.device = device
        if self.modes is not None or self.feature_net is not None or datamodule is None:
            return
        if hasattr(datamodule, "modes"):
            self.modes, self.std = datamodule.modes.float(), float(datamodule.std)
            return
        if not self._wants_classifier(datamodule, sample_shape):
            return
        net = self.features.load(self.recipe, datamodule, sample_shape, device, run_dir, world_size)
        self.feature_net = net.to(device)
        self.reference = self._fid()
        self.reference_seen = 0  # a Python count: the metric's own is a device tensor (a sync per read)

    def _fid(self) -> FrechetInceptionDistance:
        # real statistics are gathered once per stage and kept across resets; fakes are redrawn each time
        if self.inception_weights is None:
            fid = FrechetInceptionDistance(feature=self.feature_net, reset_real_features=False)
        else:
            fid = _InceptionFID(
                feature=2048,
                normalize=True,
                reset_real_features=False,
                feature_extractor_weights_path=self.inception_weights,
            )
        return fid.to(self.device)

    def _stage(self, stage: str) -> dict[str, Any]:
        if stage not in self.stages:
            metrics: dict[str, Any] = {"real_ready": False}
            if self.modes is not None:
                metrics["modes"] = ModeCoverage(self.modes, self.std)
            if self.feature_net is not None:
                num_classes = self.feature_net.net.fc.out_features
                metrics.update(
                    fid=self._fid(),
                    confidence=ClassConfidence(num_classes).to(self.device),
                    # the same judge on real images: what a perfect generator would score
                    real_confidence=ClassConfidence(num_classes).to(self.device),
                    correct=0,
                    seen=0,
                )
            self.stages[stage] = metrics
        return self.stages[stage]

    @torch.no_grad()
    def see_training_batch(self, real: Tensor) -> None:
        """Real training images for the reference FID, until `num_reference` have been seen."""
        ref = self.reference
        if ref is None or self.reference_value is not None or self.reference_seen >= self.num_reference:
            return
        taken = real[: self.num_reference - self.reference_seen]
        ref.update(taken.to(self.device), real=False)
        self.reference_seen += len(taken)

    @torch.no_grad()
    def see_real_batch(self, stage: str, real: Tensor, labels: Tensor) -> None:
        """Real images of `stage` (once per run): FID statistics and the classifier's accuracy."""
        metrics = self._stage(stage)
        if self.feature_net is None or metrics["real_ready"]:
            return
        real = real.to(self.device)
        metrics["fid"].update(real, real=True)
        if stage == "val" and self.reference is not None and self.reference_value is None:
            self.reference.update(real, real=True)
        _, logits = self.feature_net.features_and_logits(real)
        metrics["real_confidence"].update(logits)
        metrics["correct"] += int((logits.argmax(1) == labels.to(self.device)).sum())
        metrics["seen"] += len(labels)

    def metric_names(self) -> list[str]:
        """The names `compute` returns (without the stage), as far as known before any sample is drawn."""
        if self.modes is not None:
            return ["modes_covered", "hq_ratio"]
        if self.feature_net is None:
            return []
        names = ["fid", "class_confidence", "class_share_min", "class_share_max"]
        return [*names, "fid_classifier_acc", "class_confidence_real", "fid_real"]

    @torch.no_grad()
    def compute(
        self, stage: str, fake: Tensor, batch_size: int, labels: Tensor | None = None
    ) -> dict[str, float]:
        """The stage's metrics of generated samples `fake` (then reset, real statistics kept).

        `labels`: what a conditional generator was asked for; at test time they give `class_match`,
        judged by the nearest mode (mixtures) or the FID classifier's argmax (images).
        """
        metrics, out = self._stage(stage), {}
        judged: list[Tensor] = []
        if "modes" in metrics:
            coverage = metrics["modes"]
            coverage.update(fake.cpu())
            out.update({k: float(v) for k, v in coverage.compute().items()})
            coverage.reset()
            judged.append(torch.cdist(fake.float().cpu(), self.modes).argmin(dim=1))
        if "fid" in metrics and metrics["seen"] >= 2:
            metrics["real_ready"] = True
            fid, confidence = metrics["fid"], metrics["confidence"]
            for chunk in fake.split(batch_size):
                fid.update(chunk, real=False)
                logits = self.feature_net.features_and_logits(chunk)[1]
                confidence.update(logits)
                judged.append(logits.argmax(dim=1).cpu())
            out["fid"] = float(fid.compute())
            out.update({k: float(v) for k, v in confidence.compute().items()})
            fid.reset()
            confidence.reset()
            out["fid_classifier_acc"] = metrics["correct"] / metrics["seen"]
            out["class_confidence_real"] = float(metrics["real_confidence"].compute()["class_confidence"])
            if stage == "val":
                out.update(self._reference())
        if labels is not None and stage == "test" and judged:
            classes = len(self.modes) if self.modes is not None else self.feature_net.net.fc.out_features
            match = ClassMatch(classes)
            match.update(torch.cat(judged), labels.cpu())
            out.update({k: float(v) for k, v in match.compute().items()})
        return out

    def _reference(self) -> dict[str, float]:
        ref = self.reference
        if self.reference_value is None and ref is not None and ref.fake_features_num_samples >= 2:
            self.reference_value = float(ref.compute())
            self.reference = None  # its statistics are no longer needed
        return {} if self.reference_value is None else {"fid_real": self.reference_value}


def _check_inception(weights: str) -> None:
    """Inception FID needs torch-fidelity and its weights file; nothing here downloads them."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError(
            "task.fid_inception_weights is set but torch-fidelity is not installed: "
            "pip install torch-fidelity (or set task.fid_inception_weights=null for the classifier FID)"
        )
    if not Path(weights).expanduser().is_file():
        raise ConfigError(
            f"task.fid_inception_weights={weights}: no such file; pass the path of torch-fidelity's "
            "pt_inception-2015-12-05 weights"
        )


class _InceptionFID(FrechetInceptionDistance):
    """Inception FID on the GAN's [-1, 1] images: rescaled to [0, 1], grey images given 3 channels."""

    def update(self, imgs: Tensor, real: bool) -> None:
        imgs = imgs.add(1).div(2).clamp(0, 1)
        if imgs.shape[1] == 1:
            imgs = imgs.expand(-1, 3, -1, -1)
        super().update(imgs, real)

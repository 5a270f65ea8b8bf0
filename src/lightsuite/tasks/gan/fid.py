"""The feature network of the GAN family's FID: a classifier trained by the suite's own classification task.

Inception weights need a download; a classifier trained on the same real data needs none and is a
sharper judge of small images (digits, MNIST) than ImageNet features. It sees images in the GAN's
pixel range ([-1, 1], `data.pixels=symmetric`), comes from a classification checkpoint or is trained
on first use and cached, and is frozen: eval mode, no gradients, never part of a GAN checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightsuite.errors import ConfigError
from lightsuite.io import save_torch
from lightsuite.run.checkpoints import check_task, checkpoint_record, load_checkpoint


class FeatureClassifier(nn.Module):
    """A classifier whose forward returns the input of its last linear layer `fc` (`num_features` wide)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(net, "fc", None), nn.Linear):
            raise ConfigError("the FID classifier must end in a linear layer named `fc` (e.g. resnet20)")
        self.net = net
        # torchmetrics' FID reads the feature size from here instead of probing with a dummy image
        self.num_features = net.fc.in_features
        self._features: Tensor | None = None
        net.fc.register_forward_hook(self._keep_input)
        self.eval().requires_grad_(False)

    def _keep_input(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self._features = args[0]

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.net(x)
        return self._features, logits

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[0]

    def train(self, mode: bool = True) -> FeatureClassifier:
        # frozen for good: BatchNorm must keep its running statistics whoever calls .train()
        return super().train(False)


class _Batches(Dataset):
    """Whole raw batches, scaled by the DataModule's own transform when drawn."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]], transform: Callable[[Tensor], Tensor]) -> None:
        self.batches, self.transform = batches, transform

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.batches[i]
        return self.transform(x), y


def load_fid_classifier(ckpt_path: str, input_shape: tuple[int, ...]) -> FeatureClassifier:
    """The network of a `task=classification` checkpoint trained on `data.pixels=symmetric` images."""
    from lightsuite.run.build import build
    from lightsuite.tasks.classification import ClassificationTask

    key = "task.fid_classifier_ckpt"
    ckpt = load_checkpoint(ckpt_path, key)
    record = checkpoint_record(ckpt, ckpt_path, key)
    check_task(record, f"{ClassificationTask.__module__}.{ClassificationTask.__qualname__}", ckpt_path, key)
    config = OmegaConf.create(record["config"])
    if config.data.get("pixels", "standardized") != "symmetric":
        raise ConfigError(
            f"{key}={ckpt_path} was trained on standardized pixels, but GAN samples are in [-1, 1]; "
            "train it with data.pixels=symmetric (or leave the key null to train one automatically)"
        )
    if tuple(record["net_kwargs"].get("input_shape", ())) != tuple(input_shape):
        raise ConfigError(
            f"{key}={ckpt_path} was trained on images of another shape than {list(input_shape)}"
        )
    net = build(config.model, "model", **record["net_kwargs"])
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return FeatureClassifier(net)


def train_fid_classifier(
    datamodule: Any,
    classifier: Callable[..., nn.Module],
    epochs: int,
    seed: int,
    cache_dir: str | None,
    accelerator: str = "cpu",
) -> FeatureClassifier:
    """Train `classifier` with ClassificationTask on the DataModule's training images, or load it from cache.

    The cache file is named by what determines the weights (data, shape, network, epochs, seed), so a
    second GAN run on the same data reuses the first one's classifier.
    """
    from lightsuite.tasks.classification import ClassificationTask

    net_kwargs = datamodule.net_kwargs
    name = getattr(classifier, "func", classifier).__name__
    keywords = getattr(classifier, "keywords", {})
    recipe = f"{type(datamodule).__name__}|{net_kwargs}|{name}|{keywords}|{epochs}|{seed}"
    digest = hashlib.sha1(recipe.encode()).hexdigest()[:12]
    cache = (
        Path(cache_dir).expanduser() / f"fid_{type(datamodule).__name__}_{name}_{digest}.pt"
        if cache_dir
        else None
    )
    net = classifier(**net_kwargs)
    if cache is not None and cache.is_file():
        net.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return FeatureClassifier(net)

    batches = list(datamodule.train_dataloader())
    loader = DataLoader(
        _Batches(batches, partial(datamodule.transform_batch, train=False)), batch_size=None, shuffle=True
    )
    task = ClassificationTask(net, optimizer=partial(torch.optim.AdamW, lr=2e-3, weight_decay=1e-4))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trainer.fit(task, train_dataloaders=loader)
    net = net.cpu()
    if cache is not None:
        save_torch(net.state_dict(), cache)
    return FeatureClassifier(net)

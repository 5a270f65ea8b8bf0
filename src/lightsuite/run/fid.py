"""The FID step of image GANs: get the feature classifier once per (data, recipe), hand it to the task.

`GANTask` imports no run code, so run code supplies this step as its `fid_features` argument
(`supplied_to`, called by `build_run`; a checkpoint's stored config needs no new key for it). The
classifier is trained in the task's `prepare_data`, which Lightning runs on global rank 0 alone
while the other ranks wait at a barrier without timeout (a 30-epoch classifier can outlast DDP's
30-minute collective timeout), before any rank's `setup`; `setup` then loads the cache on every rank.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from lightsuite.errors import ConfigError
from lightsuite.io import save_torch
from lightsuite.run.build import build
from lightsuite.run.checkpoints import check_task, checkpoint_record, load_checkpoint
from lightsuite.tasks.gan.fid import FeatureClassifier, FIDRecipe

# where a run without `task.fid_classifier_dir` keeps its classifier, under its run dir
RUN_CACHE = "fid_classifier"


class FIDFeatures:
    """Gets the FID classifier a `FIDRecipe` names: from a classification checkpoint, or trained and cached.

    `prepare` trains and caches (one process: global rank 0); `load` reads what `prepare` left (every rank).
    """

    def cache_file(self, recipe: FIDRecipe, datamodule: Any, run_dir: str | None) -> Path | None:
        """Named by what determines the weights (data, shape, network, epochs, seed): a second GAN run
        on the same data reuses the first one's classifier."""
        directory = recipe.cache_dir or (run_dir and str(Path(run_dir) / RUN_CACHE))
        if not directory:
            return None
        data, name = type(datamodule).__name__, _name(recipe.classifier)
        keywords = getattr(recipe.classifier, "keywords", {})
        args = getattr(recipe.classifier, "args", ())
        # a partial's positional arguments (cifar_resnet's depth) are part of the recipe; none, as
        # before, for the config's partial of a named factory
        network = f"{name}{list(args)}" if args else name
        key = f"{data}|{datamodule.net_kwargs}|{network}|{keywords}|{recipe.epochs}|{recipe.seed}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        return Path(directory).expanduser() / f"fid_{data}_{name}_{digest}.pt"

    def prepare(self, recipe: FIDRecipe, datamodule: Any, device: torch.device, run_dir: str | None) -> None:
        """Train the classifier and cache it, unless it comes from a checkpoint or is cached already."""
        cache = self.cache_file(recipe, datamodule, run_dir)
        if recipe.ckpt or cache is None or cache.is_file():
            return
        print(
            f"training the FID classifier ({recipe.epochs} epochs) into {cache}", file=sys.stderr, flush=True
        )
        save_torch(train_fid_classifier(recipe, datamodule, device).state_dict(), cache)

    def load(
        self,
        recipe: FIDRecipe,
        datamodule: Any,
        sample_shape: tuple[int, ...],
        device: torch.device,
        run_dir: str | None,
        world_size: int = 1,
    ) -> FeatureClassifier:
        """The frozen classifier; one process alone (no Trainer ran `prepare`) trains what is missing."""
        if recipe.ckpt:
            return load_fid_classifier(recipe.ckpt, sample_shape)
        cache = self.cache_file(recipe, datamodule, run_dir)
        if cache is None:
            return FeatureClassifier(train_fid_classifier(recipe, datamodule, device))
        if not cache.is_file():
            if world_size > 1:
                raise ConfigError(
                    f"task.fid_classifier_dir={cache.parent}: rank 0 trained the FID classifier there, but "
                    "this rank does not see it; on several nodes use a directory every node sees"
                )
            self.prepare(recipe, datamodule, device, run_dir)
        net = recipe.classifier(**datamodule.net_kwargs)
        net.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return FeatureClassifier(net)


def supplied_to(task: DictConfig) -> dict[str, Any]:
    """What run code hands a task beside its network: the FID step, to a task that takes `fid_features`."""
    try:
        takes = "fid_features" in inspect.signature(get_object(task._target_)).parameters
    except Exception:  # a target that does not import: `build` names it
        takes = False
    return {"fid_features": FIDFeatures()} if takes and task.get("fid_features") is None else {}


def _name(classifier: Callable[..., Any]) -> str:
    """The classifier's factory name: a partial of `resnet20` and `resnet20` itself (a named partial
    of `cifar_resnet`) are both "resnet20", the name existing cache files carry."""
    while not hasattr(classifier, "__name__") and hasattr(classifier, "func"):
        classifier = classifier.func
    return getattr(classifier, "__name__", type(classifier).__name__)


def load_fid_classifier(ckpt_path: str, input_shape: tuple[int, ...]) -> FeatureClassifier:
    """The network of a `task=classification` checkpoint trained on `data.pixels=symmetric` images."""
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


class _Batches(Dataset):
    """Whole raw batches, scaled by the DataModule's own transform when drawn."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]], transform: Callable[[Tensor], Tensor]) -> None:
        self.batches, self.transform = batches, transform

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.batches[i]
        return self.transform(x), y


@contextmanager
def _whole_training_set(datamodule: Any):
    """The DataModule's loaders without its Trainer: every batch, not this rank's shard of them."""
    trainer, datamodule.trainer = datamodule.trainer, None
    try:
        yield
    finally:
        datamodule.trainer = trainer


def _alone() -> bool:
    return False


def train_fid_classifier(recipe: FIDRecipe, datamodule: Any, device: torch.device) -> torch.nn.Module:
    """`recipe.classifier` trained by ClassificationTask on the DataModule's training images, on `device`.

    Seeded by the recipe alone (initial weights and batch order), so 1 or N ranks and any run seed give
    the classifier its cache file is named after; the run's own random state is left as it was.
    """
    from lightsuite.tasks.classification import ClassificationTask

    datamodule.setup("fit")  # prepare_data comes before Lightning sets the data up; setup is idempotent
    gpu = device.type == "cuda"
    trainer = pl.Trainer(
        max_epochs=recipe.epochs,
        accelerator="gpu" if gpu else "cpu",
        devices=[device.index or 0] if gpu else 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = recipe.classifier(**datamodule.net_kwargs)
        task = ClassificationTask(net, optimizer=partial(torch.optim.AdamW, lr=2e-3, weight_decay=1e-4))
        for metric in task.modules():
            if isinstance(metric, Metric):
                # computed on this process alone: under the GAN's DDP a sync would wait for the other ranks
                metric.distributed_available_fn = _alone
        with _whole_training_set(datamodule):
            batches = list(datamodule.train_dataloader())
        loader = DataLoader(
            _Batches(batches, partial(datamodule.transform_batch, train=False)), batch_size=None, shuffle=True
        )
        trainer.fit(task, train_dataloaders=loader)
    return net.cpu()

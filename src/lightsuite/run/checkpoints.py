"""Reading the suite's own checkpoints safely, and the record that makes them self-describing.

Every training run stores, beside Lightning's state, a `lightsuite` entry: the resolved config
and the network's data-dependent keywords (`net_kwargs`). With it a checkpoint alone rebuilds its
network and task, so `lightsuite-sample` and `lightsuite-eval` need nothing else, and a checkpoint
of another family is recognised before any weights are loaded. It also holds the fit's metrics at
that point and whether the run stopped itself there, so a resume that has nothing left to train
still knows what the fit reported (`run/resume.py`), and the run's provenance (`run/provenance.py`:
commit, command, host, devices), so a checkpoint copied out of its run dir still says where it came from.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from lightsuite.config.checks import checkpoint_file
from lightsuite.errors import ConfigError
from lightsuite.run.budget import spent
from lightsuite.run.build import build
from lightsuite.run.files import float_metrics, run_provenance

RECORD_KEY = "lightsuite"


class RunRecord(pl.Callback):
    """Writes the run's resolved config and `net_kwargs` into every checkpoint it saves.

    Checkpoints are saved after the epoch's metrics are reduced and after early stopping has
    decided, so `fit_metrics` are what `trainer.fit` would report if the run ended there.
    """

    def __init__(self, config: Mapping[str, Any], net_kwargs: Mapping[str, Any]) -> None:
        self.record = {"config": dict(config), "net_kwargs": dict(net_kwargs)}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Take the provenance `run.json` holds, completed with the devices the trainer has now set up."""
        output_dir = (self.record["config"].get("paths") or {}).get("output_dir")
        if output_dir and "provenance" not in self.record:
            self.record["provenance"] = run_provenance(output_dir, trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RECORD_KEY] = {
            **self.record,
            "task": _qualname(type(pl_module)),
            "fit_metrics": float_metrics(trainer.callback_metrics),
            "stopped": bool(trainer.should_stop),
            # what stopped it: `trainer.max_time` (a larger budget trains on), or early stopping
            "stopped_by": _stopped_by(trainer),
        }


def _stopped_by(trainer: pl.Trainer) -> str | None:
    if not trainer.should_stop:
        return None
    return "max_time" if spent(trainer) else "early_stopping"


_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class RunDirCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, whose state follows a run dir that was moved (copied off a
    cluster, renamed) before it resumed.

    The saved state names its files by absolute path. Lightning keeps only `best_model_path` when
    `dirpath` changed, still pointing into the old dir: the test stage then fails on a file that is
    gone, and the best score is forgotten, so the next epoch replaces the best whatever its score.
    When the files are in the new dir under their old names, the state is rebased onto it whole.
    """

    @property
    def state_key(self) -> str:
        """Lightning's own key (`ModelCheckpoint{...}`): checkpoints from before this class, and
        after, resume into either."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            rebased = _rebased(state_dict, str(old), str(self.dirpath))
            if rebased is not None:
                state_dict = rebased
        super().load_state_dict(state_dict)


def _rebased(state: dict[str, Any], old: str, new: str) -> dict[str, Any] | None:
    """`state` with its paths under `old` moved under `new`, or None when a file it names is not there
    (a resume from another run's checkpoint, whose files stay where they are)."""

    def move(path: Any) -> Any:
        if not isinstance(path, str) or not path:
            return path
        rel = os.path.relpath(path, old)
        return os.path.join(new, rel) if not rel.startswith(os.pardir) else path

    out = {**state, "dirpath": new, **{k: move(state.get(k)) for k in _PATH_KEYS if k in state}}
    out["best_k_models"] = {move(k): v for k, v in (state.get("best_k_models") or {}).items()}
    named = [out.get(k) for k in _PATH_KEYS] + list(out["best_k_models"])
    if not all(os.path.isfile(p) for p in named if isinstance(p, str) and p):
        return None
    return out


def same_target(a: str, b: str) -> bool:
    """Whether two dotted names name the same object: a class re-exported by its package
    (`lightsuite.tasks.gan.GANTask`, the name checkpoints before the layout change store) is the
    class of its module (`lightsuite.tasks.gan.task.GANTask`)."""
    if a == b:
        return True
    try:
        return get_object(a) is get_object(b)
    except Exception:  # a name that no longer imports is not the same as one that does
        return False


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def load_checkpoint(path: str | os.PathLike, key: str = "ckpt_path") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`, turning every way it can be wrong into one line.

    `key` is the config key the path came from, so the message names what to change.
    """
    file = checkpoint_file(path, key)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise ConfigError(f"{key}={path} cannot be read ({exc.strerror}); check its permissions") from exc
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        raise ConfigError(
            f"{key}={path} is not a checkpoint lightsuite can read (truncated, or not saved by "
            "torch/Lightning); pass a .ckpt written by lightsuite-train"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{key}={path} holds no Lightning state; pass a .ckpt written by lightsuite-train")
    return ckpt


def checkpoint_record(
    ckpt: Mapping[str, Any], path: str | os.PathLike, key: str = "ckpt_path"
) -> dict[str, Any]:
    """The `lightsuite` record of a loaded checkpoint; a checkpoint without one is refused."""
    record = ckpt.get(RECORD_KEY)
    if not isinstance(record, dict) or "config" not in record:
        raise ConfigError(
            f"{key}={path} was not written by lightsuite-train (no run record in it); "
            "pass a checkpoint from a lightsuite run dir"
        )
    return record


def check_task(
    record: Mapping[str, Any], expected: str, path: str | os.PathLike, key: str = "ckpt_path"
) -> None:
    """Refuse a checkpoint whose task is not `expected` (a qualified class name), naming both."""
    found = record.get("task", "?")
    if not same_target(found, expected):
        raise ConfigError(
            f"{key}={path} is a checkpoint of {found.rsplit('.', 1)[-1]}, not {expected.rsplit('.', 1)[-1]}; "
            "pass a checkpoint of the same task (or choose the matching task=... and model=...)"
        )


def task_from_checkpoint(ckpt_path: str, key: str = "ckpt_path") -> Any:
    """The task of a lightsuite checkpoint, rebuilt from its run record, weights loaded, in eval mode."""
    ckpt = load_checkpoint(ckpt_path, key)
    record = checkpoint_record(ckpt, ckpt_path, key)
    config = OmegaConf.create(record["config"])
    net = build(config.model, "model", **record.get("net_kwargs", {}))
    task = build(config.task, "task", net=net)
    task.load_state_dict(ckpt["state_dict"], strict=False)
    if hasattr(task, "on_load_checkpoint"):
        task.on_load_checkpoint(ckpt)
    return task.eval()

"""The FID classifier of image GANs (`run/fid.py`): trained once per data and recipe, by one process."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FAST, ONE_TINY_EPOCH, run_cli
from fid_helpers import weights_digest
from omegaconf import open_dict

from lightsuite.models.resnet import resnet20
from lightsuite.run.build import build
from lightsuite.run.fid import RUN_CACHE, FIDFeatures
from lightsuite.run.transfer import TransferOptions
from lightsuite.tasks.gan.fid import FIDRecipe
from lightsuite.train import train

HERE = Path(__file__).parent
OLD_GAN = HERE.parent / "fixtures" / "checkpoints_e2e6019" / "gan.ckpt"
# child ranks import the recording callback from this folder
ENV = {"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
# the line the one process that trains the classifier writes
TRAINING = "training the FID classifier"
# a GAN's two optimizers step disjoint halves of the network: DDP must expect unused parameters
DDP = ["trainer=ddp_cpu", "trainer.strategy=ddp_find_unused_parameters_true"]
DDP += ["+callbacks.fid_weights._target_=fid_helpers.RecordFIDWeights"]


def tiny_digits(cache_dir: Path | None) -> list[str]:
    return [
        *FAST,
        *ONE_TINY_EPOCH,
        "experiment=digits_dcgan",
        "model.width=8",
        "model.latent_dim=8",
        "task.num_eval_samples=100",
        f"task.fid_classifier_dir={cache_dir or 'null'}",
        "task.fid_classifier_epochs=1",
    ]


@pytest.mark.slow
def test_two_ddp_ranks_train_the_classifier_once_and_score_with_its_weights(make_cfg, tmp_path):
    cache_dir = tmp_path / "fid"

    def run(name: str) -> tuple[int, list[str]]:
        run_dir = tmp_path / name
        proc = run_cli(
            "lightsuite.train",
            *tiny_digits(cache_dir),
            *DDP,
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
            env=ENV,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "rank 1/2" in proc.stderr, "the second rank never started"
        digests = [(run_dir / "fid_ranks" / f"rank{r}").read_text() for r in (0, 1)]
        return proc.stderr.count(TRAINING), digests

    trained, digests = run("first")
    [cache] = cache_dir.iterdir()
    weights = torch.load(cache, weights_only=True)
    assert trained == 1
    assert digests == [weights_digest(weights)] * 2
    # rank 0 trained on every training batch, not on its shard: the classifier one process trains
    alone = _classifier_trained_alone(build(make_cfg("train", tiny_digits(None)).data, "data"))
    assert weights.keys() == alone.keys()
    for name, value in weights.items():
        assert torch.allclose(value.float(), alone[name].float(), atol=1e-4), name
    # a second run on the same data and recipe trains nothing: both ranks load the first one's classifier
    mtime = cache.stat().st_mtime_ns
    trained, digests = run("second")
    assert trained == 0 and digests == [weights_digest(weights)] * 2
    assert list(cache_dir.iterdir()) == [cache] and cache.stat().st_mtime_ns == mtime


def _classifier_trained_alone(datamodule: Any) -> dict[str, torch.Tensor]:
    """The digits' 1-epoch ResNet-20 as one process trains it, outside any Trainer and without a cache."""
    recipe = FIDRecipe(resnet20, epochs=1)
    net = FIDFeatures().load(recipe, datamodule, (1, 8, 8), torch.device("cpu"), run_dir=None)
    return net.net.state_dict()


def test_a_run_without_a_cache_dir_caches_in_its_run_dir_and_a_second_run_reuses_it(
    make_cfg, tmp_path, capsys
):
    first = make_cfg("train", tiny_digits(None), run_dir=tmp_path / "first")
    metrics = train(first)
    assert "val/fid" in metrics and "test/fid" in metrics
    assert capsys.readouterr().err.count(TRAINING) == 1
    [cache] = (tmp_path / "first" / RUN_CACHE).iterdir()
    mtime = cache.stat().st_mtime_ns
    # a config as checkpoints before the FID step stored it: today's task keys, the old task path
    second = make_cfg("train", tiny_digits(cache.parent), run_dir=tmp_path / "second")
    old = torch.load(OLD_GAN, map_location="cpu", weights_only=True)["lightsuite"]["config"]["task"]
    # (less the transfer-learning keys every task node gained later, all off by default)
    transfer = {option.name for option in fields(TransferOptions)}
    transfer.add("channels_last")  # added with the GPU path (issue 20), null by default
    assert set(second.task) - transfer == set(old) and old["_target_"] == "lightsuite.tasks.gan.GANTask"
    with open_dict(second):
        second.task._target_ = old["_target_"]
    metrics = train(second)
    assert "val/fid" in metrics and "test/fid" in metrics
    assert TRAINING not in capsys.readouterr().err
    assert cache.stat().st_mtime_ns == mtime and not (tmp_path / "second" / RUN_CACHE).exists()

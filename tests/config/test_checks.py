"""Fail-fast config checks: every wrong-typed leaf of every group is one line before any work."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path
from typing import Literal

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from lightsuite import CONFIG_DIR
from lightsuite.config.checks import check_config, check_node, conforms, describe, target_nodes
from lightsuite.errors import ConfigError, exit_on_user_error
from lightsuite.train import train

CONF = Path(CONFIG_DIR)
GROUPS = ["data", "model", "task", "task/optimizer", "task/scheduler", "trainer", "callbacks", "logger"]
CHOICES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]

# leaves whose target accepts the wrong value we try, so only a later stage can refuse it
ACCEPTS_ANYTHING_OF_THAT_KIND = {
    "trainer.devices",  # int | str | list[int]: 12345 is a valid-looking device count
    "logger.csv.version",  # int | str | None
    "logger.tensorboard.version",
}


def _wrong(value):
    """A value of the wrong kind for a leaf whose configured value is `value`."""
    if isinstance(value, bool | int | float):
        return "abc"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        numbers = value and all(isinstance(v, int | float) for v in value)
        return ["abc", "def"] if numbers else [[1], [2]]
    return None


def _leaves(cfg: DictConfig, group: str):
    """(dotted key, wrong value) for every typed leaf of the `_target_` nodes under `group`."""
    root = group.replace("/", ".")
    for path, node in target_nodes(cfg):
        if path != root and not (path.startswith(root + ".") and root in ("callbacks", "logger")):
            continue
        for key in node:
            if key.startswith("_"):
                continue
            raw = node._get_node(key)
            if isinstance(raw, DictConfig) and "_target_" in raw:
                continue
            value = OmegaConf.to_container(raw) if isinstance(raw, ListConfig) else node[key]
            wrong = _wrong(value)
            if wrong is not None and f"{path}.{key}" not in ACCEPTS_ANYTHING_OF_THAT_KIND:
                yield f"{path}.{key}", wrong


def _one_line_exit(cfg: DictConfig) -> str:
    """Run `train(cfg)` the way the entry point does; return the stderr line, asserting status 1."""
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(cfg)
    assert exit_info.value.code == 1
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    return lines[0]


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_wrong_typed_leaf_is_one_line_and_exit_1(make_cfg, tmp_path, group, choice):
    # a dry run: a leaf the checker wrongly accepts ends the call in seconds instead of training
    base = make_cfg("train", [f"{group}={choice}", "dry_run=true"])
    leaves = list(_leaves(base, group))
    if not leaves:
        assert group in ("callbacks", "logger") and choice == "none"
        return
    for key, wrong in leaves:
        cfg = base.copy()
        with open_dict(cfg):
            OmegaConf.update(cfg, key, wrong, merge=False)
        line = _one_line_exit(cfg)
        assert f"{key}=" in line and " is not " in line, (key, line)
        assert not (tmp_path / "run").exists(), f"{key}: something was written before the check"


@pytest.mark.parametrize("key", ["seed", "train", "test", "dry_run", "optimized_metric", "tags"])
def test_top_level_keys_are_checked(make_cfg, key):
    cfg = make_cfg("train")
    with open_dict(cfg):
        # `tags=abc` would reach W&B and MLflow as the three tags `a`, `b` and `c`
        cfg[key] = ["not", "a", "scalar"] if key == "optimized_metric" else "abc"
    assert _one_line_exit(cfg).startswith(f"error: {key}=")


def test_unknown_argument_names_the_closest_valid_one(make_cfg):
    with pytest.raises(
        ConfigError, match=r"task.optimizer: SGD has no argument 'lrr' \(did you mean 'lr'\?\)"
    ):
        check_config(make_cfg("train", ["+task.optimizer.lrr=0.1"]))
    with pytest.raises(ConfigError, match=r"model: resnet50 has no argument 'stme' \(did you mean 'stem'"):
        check_config(make_cfg("train", ["model=resnet50", "+model.stme=auto"]))
    # keywords a logger hands on to its library are checked against the library's signature
    with pytest.raises(
        ConfigError, match=r"logger.wandb: WandbLogger has no argument 'gruop' \(did you mean"
    ):
        check_config(make_cfg("train", ["logger=wandb", "+logger.wandb.gruop=sweep1"]))
    # nothing close: the valid names are listed
    with pytest.raises(ConfigError, match=r"has no argument 'zzz' \(it takes: input_shape, num_classes"):
        check_config(make_cfg("train", ["+model.zzz=1"]))


def test_named_factories_are_checked_against_their_builder(make_cfg):
    with pytest.raises(ConfigError, match=r"model.shortcut=5 is not a string"):
        check_config(make_cfg("train", ["model.shortcut=5"]))
    with pytest.raises(ConfigError, match=r"plain20 has no argument 'shortcut'"):
        check_config(make_cfg("train", ["model=plain20", "+model.shortcut=A"]))


def test_missing_mandatory_value_shows_a_command(make_cfg):
    with pytest.raises(ConfigError, match=r"^ckpt_path is required: lightsuite-eval ckpt_path=\S+\.ckpt$"):
        check_config(make_cfg("eval"))


def test_missing_required_argument_and_bad_target():
    node = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 3})
    assert list(check_node(node, "head")) == [
        "head: Linear needs 'out_features': add head.out_features=<value>"
    ]
    bad = OmegaConf.create({"_target_": "torch.nn.Lineer"})
    assert "cannot be imported" in next(check_node(bad, "head"))
    # a partial is completed at call time: its missing arguments are not problems
    part = OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    assert list(check_node(part, "task.optimizer")) == []


def test_base_class_arguments_are_known_and_optional():
    """Keywords a subclass passes up (`**kwargs`) are checked against the base's signature."""
    node = OmegaConf.create({"_target_": "lightsuite.data.digits.DigitsDataModule", "batch_size": "x"})
    assert list(check_node(node, "data")) == [
        "data.batch_size='x' is not an integer (default: data.batch_size=128)"
    ]
    node = OmegaConf.create({"_target_": "lightsuite.data.digits.DigitsDataModule", "batchsize": 3})
    assert "did you mean 'batch_size'" in next(check_node(node, "data"))


@pytest.mark.parametrize(
    ("value", "hint", "ok"),
    [
        (1, float, True),
        (True, float, False),
        (True, int, False),
        (False, bool, True),
        (1.5, int, False),
        ("1", int, False),
        (None, int | None, True),
        ("B", Literal["A", "B"], True),
        ("C", Literal["A", "B"], False),
        ([1, 2], tuple[int, int], True),
        ([1, 2, 3], tuple[int, int], False),
        ([1, "x"], list[int], False),
        ("x", Path, True),
        ({"a": 1}, dict, True),
        ("x", dict, False),
    ],
)
def test_conforms(value, hint, ok):
    assert conforms(value, hint) is ok


def test_describe_reads_like_english():
    assert describe(float) == "a float"
    assert describe(int | None) == "an integer or null"
    assert describe(Literal["A", "B"]) == "one of 'A', 'B'"
    assert describe(list[int]) == "a list of integers"


def test_download_into_a_folder_that_cannot_exist_is_refused(make_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = make_cfg("train", ["data=mnist", "data.download=true"])
    with open_dict(cfg):
        cfg.data.data_dir = str(blocker / "data")
    with pytest.raises(ConfigError, match=r"paths.data_dir=.*cannot be created \(not a directory\)"):
        check_config(cfg)


@pytest.mark.parametrize(
    "override",
    [
        "+trainer.accumulate_grad_batches=0",  # Lightning divides by it
        "trainer.check_val_every_n_epoch=0",  # Lightning divides by it
        "task.scheduler.warmup_steps=-3",  # a ramp from above the lr
        "task.scheduler.warmup_start=-0.5",  # a warmup through negative learning rates
        "task.scheduler.min_lr_ratio=-0.1",  # a cosine that ends below zero
    ],
)
def test_values_no_constructor_checks_are_refused_before_any_work(make_cfg, tmp_path, override):
    key, value = override.lstrip("+").split("=")
    with pytest.raises(ConfigError, match=rf"^{key}={value} is below \d \(.*\): set it to \d or more$"):
        train(make_cfg("train", [override]))
    assert not (tmp_path / "run").exists()
    check_config(make_cfg("train", [override.replace(value, "1")]))  # the bound itself is fine

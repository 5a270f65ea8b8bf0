"""Every config composes and builds; wrong choices fail with a message that lists the valid ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lightsuite import CONFIG_DIR
from lightsuite.errors import ConfigError
from lightsuite.run.build import build, build_all

CONF = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# image classifiers; the recurrent models are tested with their own data (tests/test_sequence_experiments.py)
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if "models.resnet" in p.read_text())
GROUP_CHOICES = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in ("data", "trainer", "callbacks", "logger", "debug")
}


def _build_run(cfg):
    datamodule = build(cfg.data, "data")
    net = build(cfg.model, "model", **datamodule.net_kwargs)
    task = build(cfg.task, "task", net=net)
    callbacks = build_all(cfg.get("callbacks"), "callbacks")
    loggers = build_all(cfg.get("logger"), "logger")
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
    return datamodule, net, task, trainer


def test_groups_are_populated():
    assert EXPERIMENTS, "no experiment configs"
    assert {"default", "cpu", "gpu", "ddp"} <= set(GROUP_CHOICES["trainer"])
    assert {"csv", "wandb", "tensorboard", "many"} <= set(GROUP_CHOICES["logger"])
    assert {"fdr", "overfit", "limit"} <= set(GROUP_CHOICES["debug"])
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder"} <= set(
        GROUP_CHOICES["data"]
    )


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(make_cfg, experiment):
    cfg = make_cfg("train", [f"experiment={experiment}", "trainer.accelerator=cpu"])
    OmegaConf.resolve(cfg)
    _, net, task, trainer = _build_run(cfg)
    assert isinstance(trainer, pl.Trainer)
    assert task.net is net


def test_paper_experiment_is_the_paper_recipe(make_cfg):
    cfg = make_cfg("train", ["experiment=cifar10_resnet_paper"])
    assert cfg.data._target_.endswith("CIFAR10DataModule")
    assert (cfg.data.batch_size, cfg.data.val_size, cfg.data.padding, cfg.data.hflip) == (128, 5000, 4, True)
    opt = cfg.task.optimizer
    assert (opt._target_, opt.lr, opt.momentum, opt.weight_decay) == ("torch.optim.SGD", 0.1, 0.9, 1e-4)
    assert list(cfg.task.scheduler.milestones) == [32000, 48000] and cfg.task.scheduler.gamma == 0.1
    assert cfg.trainer.max_steps == 64000
    for model in ("plain110", "resnet1202"):
        assert make_cfg(
            "train", ["experiment=cifar10_resnet_paper", f"model={model}"]
        ).model._target_.endswith(model)


@pytest.mark.parametrize("group", sorted(GROUP_CHOICES))
def test_every_choice_composes(make_cfg, group):
    for choice in GROUP_CHOICES[group]:
        overrides = [f"{group}={choice}"]
        if group == "data" and choice == "image_folder":
            overrides.append("data.path=somewhere")
        cfg = make_cfg("train", overrides)
        OmegaConf.resolve(cfg)


@pytest.mark.parametrize("name", MODELS)
def test_model_config_builds_for_digits(make_cfg, name):
    cfg = make_cfg("train", [f"model={name}"])
    net = build(cfg.model, "model", input_shape=(1, 8, 8), num_classes=10)
    assert net.num_classes == 10


def test_shortcut_override(make_cfg):
    a = build(make_cfg("train", ["model=resnet20"]).model, "model")
    b = build(make_cfg("train", ["model=resnet20", "model.shortcut=B"]).model, "model")
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())


def test_unknown_choice_lists_the_valid_ones(make_cfg):
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg("train", ["model=resnet21"])
    message = str(info.value)
    assert "resnet21" in message
    for valid in ("resnet20", "plain56", "resnet18"):
        assert valid in message


def test_bad_value_is_a_config_error_naming_the_group(make_cfg):
    cfg = make_cfg("train", ["model.shortcut=C"])
    with pytest.raises(ConfigError, match=r"^model\.shortcut=C was refused by resnet20: .*'A', 'B', 'none'"):
        build(cfg.model, "model", input_shape=(1, 8, 8), num_classes=10)


def test_eval_config_composes(make_cfg):
    cfg = make_cfg("eval", ["ckpt_path=x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt" and cfg.task_name == "eval"


SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))


@pytest.mark.parametrize("search", SEARCHES)
def test_search_presets_search_keys_that_exist_in_the_direction_of_their_checkpoint(make_cfg, search):
    """Every searched key is a real config key (Optuna overrides it) and the search direction
    agrees with the best checkpoint's mode, so the best trial and the tested weights agree."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightsuite.launch.optuna_settings import read_settings
    from lightsuite.launch.optuna_trial import make_pruner

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.lightsuite_sweeper.optuna_sweeper.OptunaSweeper"
    # the settings the sweeper reads when the search starts are all valid, its pruner too
    settings = read_settings(sweeper, "x")
    assert settings.study_name == search and make_pruner(settings.pruner) is not None
    # the same command continues the study: its sweep dir does not depend on the time
    assert cfg.hydra.sweep.dir.endswith(f"search/{search}")
    branches = [k for cases in sweeper.get("conditional", {}).values() for b in cases.values() for k in b]
    for key in [*sweeper.params, *branches]:
        if "/" in key:  # a config group: each choice is one of its files
            for choice in str(sweeper.params[key]).removeprefix("choice(").removesuffix(")").split(","):
                assert (CONF / key / f"{choice.strip()}.yaml").exists(), f"{search}: {key}={choice}"
            continue
        assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>", f"{search}: {key} is not a key"
    # the objective is the monitored metric, or its best value so far (`val/acc_best`)
    assert cfg.optimized_metric in (
        cfg.callbacks.model_checkpoint.monitor,
        cfg.callbacks.model_checkpoint.monitor + "_best",
    )
    expected = {"maximize": "max", "minimize": "min"}[sweeper.direction]
    assert cfg.callbacks.model_checkpoint.mode == expected

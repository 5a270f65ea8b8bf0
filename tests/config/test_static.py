"""The import-free pass of the config checker: signatures read from source agree with the imported ones."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf, open_dict
from test_checks import CHOICES, _leaves

from lightsuite import CONFIG_DIR
from lightsuite.config import checks, static
from lightsuite.config.checks import RUN_OPTIONS, check_config, signature_of
from lightsuite.config.hints import conforms
from lightsuite.errors import ConfigError

TARGETS = sorted(
    {m for p in Path(CONFIG_DIR).rglob("*.yaml") for m in re.findall(r"_target_: *([\w.]+)", p.read_text())}
    | set(RUN_OPTIONS.values())
)
PROBES = [0, 3, 1.5, -2.0, "abc", "cpu", True, None, [1, 2], ["a"], [[1]], {"a": 1}]


def _has_any(hint) -> bool:
    return hint is typing.Any or any(_has_any(a) for a in typing.get_args(hint))


def test_signatures_read_from_source_agree_with_the_imported_ones():
    resolved = 0
    for target in TARGETS:
        found = static.signature(target)
        if found is None:
            continue
        resolved += 1
        _, params, open_ended = found
        imported, imported_open = signature_of(get_object(target))
        assert list(params) == list(imported), target
        assert open_ended == imported_open, target
        for name, (param, hint) in params.items():
            other, other_hint = imported[name]
            assert param.kind == other.kind, (target, name)
            assert (param.default is inspect.Parameter.empty) == (other.default is inspect.Parameter.empty)
            for value in PROBES:
                # never stricter than the pass after the imports; as strict where it knows every name
                if conforms(value, other_hint):
                    assert conforms(value, hint), (target, name, value, hint, other_hint)
                elif not _has_any(hint):
                    assert not conforms(value, hint), (target, name, value, hint, other_hint)
    # the suite's own targets, torch's optimizers and Lightning's Trainer and callbacks are all read
    assert resolved >= len(TARGETS) - 4, [t for t in TARGETS if static.signature(t) is None]


def test_what_the_source_says_re_exports_partials_dataclasses_and_base_classes():
    # a re-export (pytorch_lightning.Trainer lives in pytorch_lightning/trainer/trainer.py)
    name, params, open_ended = static.signature("pytorch_lightning.Trainer")
    assert name == "Trainer" and "max_epochs" in params and not open_ended
    # a named factory: the builder's parameters less the depth it fixes
    _, params, _ = static.signature("lightsuite.models.resnet.resnet20")
    assert "depth" not in params and "drop_path" in params
    _, params, _ = static.signature("lightsuite.models.resnet.plain20")
    assert "shortcut" not in params
    # a subclass passing **kwargs up: the base's arguments, optional
    _, params, _ = static.signature("lightsuite.data.digits.DigitsDataModule")
    assert params["batch_size"][1] is int and params["batch_size"][0].default == 128
    # a dataclass's fields
    _, params, _ = static.signature(RUN_OPTIONS["task"])
    assert {"init_from", "freeze", "unfreeze_at_epoch", "unfreeze_lr_factor"} <= set(params)
    assert static.signature("lightsuite.no_such_module.Thing") is None
    assert static.signature("lightsuite.models.resnet.no_such_builder") is None


@pytest.mark.parametrize(("group", "choice"), CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_without_imports_every_wrong_leaf_gets_the_same_line_or_waits_for_the_full_pass(
    make_cfg, monkeypatch, group, choice
):
    base = make_cfg("train", [f"{group}={choice}", "dry_run=true"])
    with monkeypatch.context() as m:
        m.setattr(checks, "_loaded", lambda module: False)
        check_config(base, imports=False)  # a valid config passes (the pass is never stricter)
    caught = 0
    leaves = list(_leaves(base, group))
    for key, wrong in leaves:
        cfg = base.copy()
        with open_dict(cfg):
            OmegaConf.update(cfg, key, wrong, merge=False)
        with pytest.raises(ConfigError) as imported:
            check_config(cfg)
        with monkeypatch.context() as m:
            m.setattr(checks, "_loaded", lambda module: False)
            try:
                check_config(cfg, imports=False)
            except ConfigError as exc:
                assert str(exc) == str(imported.value), key
                caught += 1
    # only the loggers the source reader cannot follow are left to the full pass
    if group != "logger" or choice == "csv":
        assert caught == len(leaves), f"{caught} of {len(leaves)} caught without imports"

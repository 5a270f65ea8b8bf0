"""Building a run's objects from config: the one place that checks, shows, saves, seeds and builds.

A value a constructor refuses becomes one line naming its config key (`build`, `ConfiguredPartial`,
`refusals_named`).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from lightsuite.config.checks import HYDRA_KEYS, RUN_OPTIONS, _spell, check_config, signature_of
from lightsuite.errors import ConfigError, LightsuiteError, user_error
from lightsuite.run.files import save_config, save_run_file


def build(node: DictConfig | None, name: str, **kwargs: Any) -> Any:
    """Instantiate one `_target_` node, naming the config key in any error.

    A value the target refuses (a torch or Lightning range check) comes back as a `ConfigError`
    that names the key, e.g. `trainer.max_epochs=-5`. Partials among the node's arguments (the
    optimizer, the scheduler) are built here as `ConfiguredPartial`s, so that the same holds when
    the task completes them at fit time.
    """
    if node is None or "_target_" not in node:
        raise ConfigError(f"`{name}` has no `_target_`: pick one with `{name}=<choice>` on the command line")
    partials = {
        key: build(child, f"{name}.{key}")
        for key, child in node.items_ex(resolve=False)
        if key not in kwargs and _is_partial(child)
    }
    # keys run code takes off the node (`task.init_from`: run/transfer.py), and sub-nodes a keyword replaces
    taken = [k for k in run_option_keys(name) if k in node] + [k for k in kwargs if k in node]
    if partials or taken:
        # Hydra merges keyword arguments into the node: the built partials replace their sub-nodes
        trimmed = copy.deepcopy(node)
        trimmed._set_parent(node._get_parent())  # interpolations such as ${paths.output_dir} resolve
        with open_dict(trimmed):
            for key in [*partials, *taken]:
                del trimmed[key]
        node, kwargs = trimmed, {**partials, **kwargs}
    try:
        built = instantiate(node, **kwargs)
    except InstantiationException as exc:
        if user_error(exc) is not None:
            raise
        cause = exc.__cause__ or exc
        blamed = refused_value(name, config_values(node), get_target(node), cause)
        if blamed is not None:
            raise blamed from exc
        raise ConfigError(f"could not build `{name}` ({node._target_}): {cause}".replace("\n", " ")) from exc
    if isinstance(built, functools.partial) and node.get("_partial_", False):
        return ConfiguredPartial.of(built, name, config_values(node))
    return built


def run_option_keys(name: str) -> list[str]:
    """The keys of config node `name` that run code consumes, not its target (`config.checks.RUN_OPTIONS`)."""
    return list(signature_of(get_object(RUN_OPTIONS[name]))[0]) if name in RUN_OPTIONS else []


def _is_partial(node: Any) -> bool:
    return isinstance(node, DictConfig) and "_target_" in node and bool(node.get("_partial_", False))


def get_target(node: DictConfig) -> Any:
    """The callable a node names, or its dotted name where it cannot be imported."""
    try:
        return get_object(node._target_)
    except Exception:
        return node._target_


def config_values(node: DictConfig) -> dict[str, Any]:
    """A node's own plain values (no Hydra keys, no nested objects), resolved where possible."""
    values = {}
    for key in node:
        if key in HYDRA_KEYS or _is_partial(node._get_node(key)):
            continue
        try:
            value = node[key]
            value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except Exception:  # an interpolation only Hydra's runtime resolves
            continue
        if not (isinstance(value, dict) and "_target_" in value):
            values[key] = value
    return values


class ConfiguredPartial(functools.partial):
    """A `_partial_` node's callable that names its config key when a call refuses a value.

    Optimizers and schedulers are completed inside `configure_optimizers`, once fitting starts:
    torch's `ValueError("Invalid learning rate: -0.1")` would escape there as a traceback.
    A subclass of `functools.partial`, so tasks and pickling see a plain partial.
    """

    key: str
    values: dict[str, Any]

    @classmethod
    def of(cls, inner: functools.partial, key: str, values: dict[str, Any]) -> ConfiguredPartial:
        made = cls(inner.func, *inner.args, **inner.keywords)
        made.key, made.values = key, values
        return made

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, LightsuiteError):
                raise
            raise refused_value(self.key, self.values, self.func, exc, always=True) from exc


# the words torch's messages use for some argument names
_SPOKEN = {"lr": ("learning rate",), "eps": ("epsilon",), "betas": ("beta",)}


def blamed_keys(values: Mapping[str, Any], reason: str, spelled_only: bool = False) -> list[str]:
    """The key of `values` that an error message is about, or the keys whose values it quotes.

    A key spelled as an argument (`max_epochs`, `devices=0`) beats one only mentioned in words
    ("... using cpu accelerator"), and the first one named is the culprit (Lightning's messages
    go on to suggest other keys); with `spelled_only`, only spelled keys count.
    """
    text = reason.lower()

    def at(pattern: str) -> int | None:
        found = re.search(pattern, text)
        return found.start() if found else None

    def spelled(key: str) -> int | None:
        return at(rf"`{re.escape(key)}`|(?<!\w){re.escape(key)}\s*=")

    def spoken(key: str) -> int | None:
        words = (key, key.replace("_", " "), *_SPOKEN.get(key, ()))
        return min((p for w in words if (p := at(_word(w))) is not None), default=None)

    for where in (spelled,) if spelled_only else (spelled, spoken):
        hits = {k: p for k in values if (p := where(k)) is not None}
        if hits:
            return [min(hits, key=hits.__getitem__)]
    if spelled_only:
        return []
    quoted = [k for k, v in values.items() if any(at(_word(str(x))) is not None for x in _scalars(v))]
    return quoted if len(quoted) <= 2 else []


def _word(text: str) -> str:
    return rf"(?<!\w){re.escape(text.lower())}(?!\w)"


def _scalars(value: Any) -> list[Any]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float, str)) and not isinstance(v, bool)]


def refused_value(
    key: str, values: Mapping[str, Any], target: Any, exc: BaseException, always: bool = False
) -> ConfigError | None:
    """One line naming the config key(s) a constructor's error is about, and the fix.

    None when no key can be named (and `always` is false): the caller keeps its own message.
    """
    reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    owner = getattr(target, "__name__", str(target).rsplit(".", 1)[-1])
    blamed = blamed_keys(values, reason)
    if not blamed:
        if not always:
            return None
        return ConfigError(f"{key} ({owner}) refused its settings: {reason}; correct the values under {key}")
    shown = " and ".join(f"{key}.{k}={_spell(values[k])}" for k in blamed)
    fix = f"set {key}.{blamed[0]} to a value {owner} accepts"
    default = _default(target, blamed[0])
    if default is not None and default != values[blamed[0]]:
        fix += f", e.g. its default {key}.{blamed[0]}={_spell(default)}"
    return ConfigError(f"{shown} was refused by {owner}: {reason}; {fix}")


@contextmanager
def refusals_named(node: DictConfig, name: str) -> Iterator[None]:
    """Name the config key behind a value error that an object raises only once it runs.

    Lightning checks some Trainer arguments when fitting starts (`val_check_interval` against the
    number of batches): an error that spells out one of `node`'s keys becomes a one-line
    `ConfigError` naming it; any other error passes unchanged.
    """
    try:
        yield
    except Exception as exc:
        lightning_refusal = type(exc).__name__ == "MisconfigurationException"
        if isinstance(exc, LightsuiteError) or not (isinstance(exc, ValueError) or lightning_refusal):
            raise
        values = config_values(node)
        spelled = blamed_keys(values, str(exc), spelled_only=True)
        if not spelled:
            raise
        raise refused_value(name, {k: values[k] for k in spelled}, get_target(node), exc) from exc


def _default(target: Any, name: str) -> Any:
    try:
        param = signature_of(target)[0].get(name)
    except Exception:
        return None
    default = param[0].default if param else None
    return default if isinstance(default, (int, float, str)) and not isinstance(default, bool) else None


def build_all(node: DictConfig | None, name: str) -> list[Any]:
    """Instantiate every entry of a group such as `callbacks` or `logger`; null entries are skipped."""
    if not node:
        return []
    return [build(sub, f"{name}.{key}") for key, sub in node.items() if sub is not None]


def prepare_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Check, show and save the config, seed everything, build the data and the task around its network.

    The config is checked against every target's signature first, so a typo costs nothing. The
    network is built from `model` with the keywords the data supplies (`net_kwargs`: for images,
    `input_shape` and `num_classes`), so one model config fits every data set. Building the
    DataModule loads nothing; that happens when the Trainer asks for batches. A dry run saves no
    config: its dir holds no run.
    """
    check_config(cfg)
    print_config(cfg)
    if not cfg.get("dry_run", False):
        save_config(cfg, cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, task = build_run(cfg)
    if not cfg.get("dry_run", False):
        save_run_file(task, cfg.paths.output_dir)
    return datamodule, task


def build_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule (nothing loaded yet) and the task around the network built for its data (and the
    steps run code supplies to it: the FID classifier of image GANs, `run/fid.py`; the network's
    first weights and its freezing when the run fits, `run/transfer.py`)."""
    from lightsuite.run.fid import supplied_to  # which builds with this module
    from lightsuite.run.transfer import head_name, prepare_transfer  # so does this one

    datamodule = build(cfg.data, "data")
    net = build(cfg.model, "model", **datamodule.net_kwargs)
    fits = bool(cfg.get("train", False))  # `lightsuite-eval` composes no `train`
    transfer = prepare_transfer(cfg, net) if fits else {}
    if fits and cfg.task.get("freeze") is not None:
        head_name(net)  # a network without a head is refused here, before any work (a dry run too)
    return datamodule, build(cfg.task, "task", net=net, **supplied_to(cfg.task), **transfer)


@rank_zero_only
def report_dry_run(cfg: DictConfig, task: pl.LightningModule) -> None:
    """The one thing a dry run shows: what would train, how big it is, and where it would write."""
    params = sum(p.numel() for p in task.parameters())
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    Console(stderr=False).print(
        f"dry run ok: {type(task).__name__} around {cfg.model._target_.rsplit('.', 1)[-1]}, "
        f"{params:,} parameters ({trainable:,} trainable); run dir {cfg.paths.output_dir}",
        highlight=False,
        soft_wrap=True,
    )


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """Show the resolved config as a tree, one branch per top-level group."""
    tree = Tree("config", style="bold")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold cyan")
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    Console(stderr=False).print(tree)

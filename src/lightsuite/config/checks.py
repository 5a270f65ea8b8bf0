"""Fail-fast config checks: every `_target_` node against its target's signature, before any work.

A typo or a wrong-typed value on the command line should cost seconds, not a data load and a
Trainer start (or a queue wait on a cluster). Right after composition, each node with a `_target_`
(partials included) is matched against the callable it names: unknown arguments, missing required
ones and values of the wrong type are reported as one line naming the key, the value, what was
expected and the closest valid name. Ranges a signature cannot express stay in the constructors.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from lightsuite.config import static
from lightsuite.config.hints import conforms, describe
from lightsuite.config.resolvers import RESOLVERS
from lightsuite.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

# keywords `train`/`eval` pass when they build a group, so configs need not (and cannot) set them
SUPPLIED: dict[str, set[str] | None] = {
    "task": {"net"},
    "trainer": {"callbacks", "logger"},
    "model": None,  # the DataModule's `net_kwargs`, known only once the data is built
}

# plain (target-less) keys of the entry configs
TOP_LEVEL: dict[str, Any] = {
    "seed": int | None,
    # a W&B or MLflow tag each; `tags=ci` would give the loggers two tags, `c` and `i`
    "tags": list[str] | None,
    "train": bool,
    "test": bool,
    "dry_run": bool,
    "compile": bool | typing.Literal["auto"],
    "ckpt_path": str | None,
    "optimized_metric": str | None,
    "use_run_config": bool,
    "num_samples": int,
    "output": str | None,
    "prompt": str,
    "length": int,
    "temperature": float,
    "label": int | None,
    "fooling_confidence": float,
    "fooling_steps": int,
}

# lower bounds no constructor checks: below them Lightning divides by zero or trains on silently, and a
# schedule ramps or decays to a negative learning rate
AT_LEAST: dict[str, tuple[float, str]] = {
    "trainer.accumulate_grad_batches": (1, "batches per optimizer step"),
    "trainer.check_val_every_n_epoch": (1, "epochs between validations (null: by val_check_interval)"),
    "task.scheduler.warmup_steps": (0, "steps of linear warmup"),
    "task.scheduler.warmup_start": (0, "the fraction of the lr warmup starts from"),
    "task.scheduler.min_lr_ratio": (0, "the fraction of the lr cosine decays to"),
    "callbacks.mid_epoch_checkpoint.every_n_steps": (1, "optimizer steps between mid-epoch checkpoints"),
}

# where targets that end in a bare `**kwargs` send them, so those keywords are checked too
KWARGS_GO_TO = {"pytorch_lightning.loggers.wandb.WandbLogger": "wandb.init"}
RUN_OPTIONS = {"task": "lightsuite.run.transfer.TransferOptions"}  # keys run code takes off a node

# what a user types for a missing mandatory value, shown in the message
EXAMPLES = {"ckpt_path": "outputs/2026-11-27/10-00-00/checkpoints/last.ckpt"}


def check_config(cfg: DictConfig, imports: bool = True) -> None:
    """Raise one `ConfigError` naming every problem found in `cfg`, or return quietly.

    With `imports=False`, targets whose modules are not loaded yet are checked from their source
    (static.py), importing nothing: the entry points run this pass before torch and Lightning load, so
    a wrong value costs a second; the full pass follows when the run builds its objects.
    """
    problems = list(_missing(cfg)) or [
        *_top_level(cfg),
        *_targets(cfg, imports),
        *_below_bounds(cfg),
        *_durations(cfg),
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    data = cfg.get("data")
    if isinstance(data, DictConfig) and data.get("download") is True and data.get("data_dir"):
        check_writable_dir(data.data_dir, "paths.data_dir")


def check_writable_dir(path: str | os.PathLike, key: str) -> Path:
    """Create `path` if needed and make sure files can be written there, before a download starts."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{key}={path} cannot be created ({exc.strerror.lower()}); choose a folder you can write, "
            f"e.g. {key}=$HOME/data"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={path} is not writable; choose a folder you can write, e.g. {key}=$HOME/data"
        )
    return folder


def checkpoint_file(path: str | os.PathLike, key: str = "ckpt_path") -> Path:
    """`path` as a checkpoint file to load, or the one line saying why it is none (no torch needed).

    `lightsuite-eval` and `lightsuite-sample` check their `ckpt_path` with it before torch loads;
    `run/checkpoints.py` `load_checkpoint` starts with it.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError(f"{key}={path}: no such file; pass {key}=<run dir>/checkpoints/last.ckpt")
    if not file.is_file():
        raise ConfigError(f"{key}={path} is a directory; pass a .ckpt file in it, e.g. checkpoints/last.ckpt")
    return file


def _command(cfg: DictConfig) -> str:
    return f"lightsuite-{cfg.get('task_name') or 'train'}"


def _missing(cfg: DictConfig) -> Iterator[str]:
    """Mandatory values (`???`) left unset, each with a command that sets it."""
    for key in _leaf_keys(cfg):
        if _is_missing(cfg, key):
            example = EXAMPLES.get(key.rsplit(".", 1)[-1], "<value>")
            yield f"{key} is required: {_command(cfg)} {key}={example}"


def _is_missing(cfg: DictConfig, dotted: str) -> bool:
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return isinstance(node, DictConfig) and OmegaConf.is_missing(node, leaf)


def _leaf_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    for key in node:
        if key == "hydra":
            continue
        path = f"{prefix}{key}"
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from _leaf_keys(child, f"{path}.")
        else:
            yield path


def _value(node: DictConfig, key: str, path: str) -> tuple[bool, Any]:
    """(known, value) of one entry, resolved; values that need Hydra's runtime are not known yet."""
    try:
        value = node[key]
    except InterpolationResolutionError as exc:
        if "hydra" in str(exc).lower():
            return False, None
        reason = str(exc).splitlines()[0]
        if "Unsupported interpolation type" in reason and reason.rsplit(" ", 1)[-1] in RESOLVERS:
            # a config composed by a script of the user's own, without the entry points
            reason += "; call lightsuite.config.resolvers.register_resolvers() before composing"
        raise ConfigError(f"{path}: {reason}") from None
    except MissingMandatoryValue:
        return False, None
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            value = OmegaConf.to_container(value, resolve=True)
        except InterpolationResolutionError:
            return False, None
    return True, value


def _top_level(cfg: DictConfig) -> Iterator[str]:
    for key, hint in TOP_LEVEL.items():
        if key in cfg:
            known, value = _value(cfg, key, key)
            if known and not conforms(value, hint):
                yield _wrong_type(key, value, hint, None)


def _below_bounds(cfg: DictConfig) -> Iterator[str]:
    for key, (low, what) in AT_LEAST.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < low:
            yield f"{key}={value} is below {low:g} ({what}): set it to {low:g} or more"


def _durations(cfg: DictConfig) -> Iterator[str]:
    """The training budget and the mid-epoch checkpoint interval, which no signature can check."""
    from lightsuite.run.budget import budget_seconds

    max_time = OmegaConf.select(cfg, "trainer.max_time", default=None, throw_on_resolution_failure=False)
    if isinstance(max_time, DictConfig):
        max_time = OmegaConf.to_container(max_time)
    try:
        budget_seconds(max_time)
    except ConfigError as exc:
        yield str(exc)
    key = "callbacks.mid_epoch_checkpoint.every_n_minutes"
    minutes = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if isinstance(minutes, int | float) and not isinstance(minutes, bool) and minutes <= 0:
        yield f"{key}={minutes} must be a positive number of minutes, or null for no timed checkpoints"


def _targets(cfg: DictConfig, imports: bool = True) -> Iterator[str]:
    for path, node in target_nodes(cfg):
        yield from check_node(node, path, imports)


def target_nodes(node: Any, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every node with a `_target_` below `node` (Hydra's own section excluded), with its key path."""
    if isinstance(node, DictConfig):
        if node._is_none() or node._is_missing():
            return
        if "_target_" in node:
            yield prefix.rstrip("."), node
        for key in node:
            if prefix == "" and key == "hydra":
                continue
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from target_nodes(child, f"{prefix}{key}.")
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node._iter_ex(resolve=False)):
            yield from target_nodes(child, f"{prefix}{i}.")


def check_node(node: DictConfig, path: str, imports: bool = True) -> Iterator[str]:
    """Problems of one `_target_` node: unknown, missing or wrong-typed arguments.

    With `imports=False` a target whose module is not loaded is read from source, or left for the
    full pass when it cannot be (static.py).
    """
    target_name = str(node._target_)
    if not imports and not _loaded(target_name.rpartition(".")[0]):
        found = static.signature(target_name)
        options = static.signature(RUN_OPTIONS[path]) if path in RUN_OPTIONS else (None, {}, False)
        if found is None or options is None:
            return
        name, params, open_ended = found
        params.update(options[1])
    else:
        try:
            target = get_object(target_name)
        except Exception as exc:
            yield f"{path}._target_={target_name!r} cannot be imported ({str(exc).splitlines()[0]})"
            return
        params, open_ended = signature_of(target)
        params.update(signature_of(get_object(RUN_OPTIONS[path]))[0] if path in RUN_OPTIONS else {})
        name = getattr(target, "__name__", target_name.rsplit(".", 1)[-1])
    partial = bool(node.get("_partial_", False))
    for key in node:
        if key in HYDRA_KEYS:
            continue
        if key not in params:
            if not open_ended:
                yield f"{path}: {name} has no argument {key!r}{_suggest(key, params)}"
            continue
        param, hint = params[key]
        known, value = _value(node, key, f"{path}.{key}")
        if not known or (isinstance(value, dict) and "_target_" in value):
            continue  # nested objects are checked as nodes of their own
        if not conforms(value, hint):
            yield _wrong_type(f"{path}.{key}", value, hint, param.default)
    supplied = SUPPLIED.get(path.split(".")[0], set()) if "." not in path else set()
    if partial or supplied is None:
        return
    for key, (param, _) in params.items():
        if param.default is inspect.Parameter.empty and key not in node and key not in supplied:
            yield f"{path}: {name} needs {key!r}: add {path}.{key}=<value>"


def _loaded(module: str) -> bool:
    """Whether `module` is imported already (its target is then checked as it is, for free)."""
    return module in sys.modules


def signature_of(target: Any) -> tuple[dict[str, tuple[inspect.Parameter, Any]], bool]:
    """Named parameters of `target` with resolved annotations, and whether it takes any keyword.

    A class whose `__init__` passes `**kwargs` up is followed along its MRO, so a subclass that
    only adds a few arguments is still checked against its base's; a chain ending in a bare
    `**kwargs` (an nn.Module, a LightningModule, a logger forwarding to a library) accepts anything.
    """
    if isinstance(target, functools.partial):
        # a named factory (`models.resnet.resnet20`) or a built partial: what is left to set
        params, open_ended = signature_of(target.func)
        bound = {*target.keywords, *list(params)[: len(target.args)]}
        return {k: v for k, v in params.items() if k not in bound}, open_ended
    params: dict[str, tuple[inspect.Parameter, Any]] = {}
    functions = _init_chain(target) if inspect.isclass(target) else [target]
    forwarded = KWARGS_GO_TO.get(f"{target.__module__}.{target.__qualname__}")
    if forwarded:
        functions = [functions[0], get_object(forwarded)]
    open_ended = not functions
    for depth, fn in enumerate(functions):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return params, True
        hints = _hints(fn)
        open_ended = False
        for pname, param in sig.parameters.items():
            if pname in ("self", "cls") or param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                open_ended = True
                continue
            if depth and param.default is inspect.Parameter.empty:
                param = param.replace(default=None)  # a base's required argument comes from the subclass
            params.setdefault(pname, (param, hints.get(pname, Any)))
        if not open_ended:
            break
    return params, open_ended


def _init_chain(cls: type) -> list[Any]:
    chain = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        chain.append(init)
    return chain


def _hints(fn: Any) -> dict[str, Any]:
    raw = inspect.unwrap(fn)
    try:
        return typing.get_type_hints(raw)
    except Exception:
        pass
    hints = {}
    module_globals = getattr(raw, "__globals__", {})
    for pname, ann in getattr(raw, "__annotations__", {}).items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, module_globals)
            except Exception:
                continue
        hints[pname] = ann
    return hints


def _wrong_type(path: str, value: Any, hint: Any, default: Any) -> str:
    shown = repr(value) if isinstance(value, str) else _spell(value)
    line = f"{path}={shown} is not {describe(hint)}"
    if default is not inspect.Parameter.empty and default is not None and conforms(default, hint):
        line += f" (default: {path}={_spell(default)})"
    return line


def _spell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_spell(v) for v in value) + "]"
    return str(value)


def _suggest(key: str, params: dict[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (it takes: {', '.join(params)})" if params else ""

"""Config values against type hints: whether a value may be passed, and the hint in words for messages.

Shared by both passes of the config checker (checks.py): the one that imports each target and the
import-free one that reads signatures from source (static.py).
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Any


def conforms(value: Any, hint: Any) -> bool:
    """Whether a config value can be passed where `hint` is annotated (unknown hints pass)."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is typing.Annotated:
        return conforms(value, args[0])
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (Path, os.PathLike) or origin is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    if origin in (tuple, list, cabc.Sequence, cabc.Iterable, cabc.MutableSequence, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else Any
        return all(conforms(v, item) for v in value)
    if origin in (dict, cabc.Mapping, cabc.MutableMapping) or hint in (dict, cabc.Mapping):
        return isinstance(value, dict)
    if hint in (list, tuple, cabc.Sequence):
        return isinstance(value, (list, tuple))
    if inspect.isclass(hint) and hint.__module__ != "builtins" and not isinstance(value, (int, float, str)):
        return True  # an object the config cannot spell; built elsewhere
    if inspect.isclass(hint):
        try:
            return isinstance(value, hint)
        except TypeError:
            return True
    return True


def describe(hint: Any) -> str:
    """`hint` in words, for messages: 'a float', 'an integer or null', "one of 'A', 'B'"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        literals = [v for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
        rest = [a for a in args if a is not type(None) and typing.get_origin(a) is not typing.Literal]
        spellable = [a for a in rest if not (inspect.isclass(a) and a not in SPELLABLE)] or rest
        words = [describe(a) for a in spellable]
        if literals:
            words.append(describe(typing.Literal[tuple(literals)]))
        words = list(dict.fromkeys(w for w in words if w))
        if type(None) in args:
            words.append("null")
        return " or ".join(words)
    if origin is typing.Literal:
        return repr(args[0]) if len(args) == 1 else "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list, cabc.Sequence, cabc.Iterable):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if hint in SPELLABLE:
        return SPELLABLE[hint]
    if origin in (dict, cabc.Mapping) or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


SPELLABLE = {bool: "true or false", int: "an integer", float: "a float", str: "a string", Path: "a path"}


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            return words[len(article) :] + "s"
    return words

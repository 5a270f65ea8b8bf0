"""Signatures read from source with `ast`, without importing: a wrong value is found before torch loads.

`lightsuite-train data.batch_size=abc` should answer in about a second, and importing the classes a
config names costs five (Lightning pulls in torch, torchmetrics, torchvision's models and scipy).
The checker's first pass (`check_config(cfg, imports=False)`) reads each `_target_`'s parameters
from its module's source: re-exports (`from x import Y`, `import *`), base classes for `**kwargs`,
dataclasses, and module-level partials (`resnet20 = preset("resnet20", cifar_resnet, 20)`).
Annotations are evaluated with typing and builtins only; names from other modules count as `Any`, so
this pass is never stricter than the full one that follows the imports. Whatever it cannot follow,
it leaves to that pass (`None`).
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Params = dict[str, tuple[inspect.Parameter, Any]]
# modules whose names annotations may use as they are: importing them costs nothing
SAFE_MODULES = {"typing", "typing_extensions", "collections", "os", "pathlib", "types", "numbers", "datetime"}
DATACLASS_NAMES = {"dataclass", "dataclasses.dataclass"}
MAX_DEPTH = 12


class NotLiteral:
    """The default of a parameter whose default is an expression, not a constant."""

    def __repr__(self) -> str:
        return "<expression>"


NOT_LITERAL = NotLiteral()


@dataclass
class Module:
    """What a module's top level binds, read from its source."""

    name: str
    is_package: bool
    defs: dict[str, ast.AST] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)


def signature(target: str) -> tuple[str, Params, bool] | None:
    """(name, parameters, takes any keyword) of the callable `target` names, or None if not followable."""
    module, _, attr = target.rpartition(".")
    try:
        found = _resolve(module, attr, 0) if module else None
        if found is None:
            return None
        params_open = _params(*found, 0)
    except (SyntaxError, ValueError, RecursionError, OSError):
        return None
    return None if params_open is None else (attr, *params_open)


@functools.cache
def _file(module: str) -> Path | None:
    top, *rest = module.split(".")
    loaded = sys.modules.get(module)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        return Path(origin) if origin and origin.endswith(".py") else None
    try:
        # a top-level name is located, not imported
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for base in spec.submodule_search_locations or []:
        path = Path(base, *rest)
        for candidate in (path / "__init__.py", path.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


@functools.cache
def _module(name: str) -> Module | None:
    path = _file(name)
    if path is None:
        return None
    found = Module(name, path.name == "__init__.py")
    _bind(found, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    return found


def _bind(module: Module, body: list[ast.stmt]) -> None:
    """Top-level bindings, the first one of a name winning (both arms of an `if` or `try` are read)."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            module.defs.setdefault(node.name, node)
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            module.defs.setdefault(node.targets[0].id, node.value)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                module.imports.setdefault(local, (alias.name if alias.asname else local, None))
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{source}" if source else base
            for alias in node.names:
                if alias.name == "*":
                    module.stars.append(source)
                else:
                    module.imports.setdefault(alias.asname or alias.name, (source, alias.name))
        elif isinstance(node, ast.If):
            _bind(module, node.body + node.orelse)
        elif isinstance(node, ast.Try):
            _bind(module, node.body + [s for h in node.handlers for s in h.body] + node.orelse)


def _resolve(module_name: str, attr: str, depth: int) -> tuple[Module, ast.AST] | None:
    """The definition `module_name.attr` is bound to, following re-exports."""
    module = _module(module_name)
    if module is None or depth > MAX_DEPTH:
        return None
    if attr in module.defs:
        return module, module.defs[attr]
    if attr in module.imports:
        source, name = module.imports[attr]
        if name is None:
            return None  # a module, not a callable
        return _resolve(source, name, depth + 1)
    for star in module.stars:
        found = _resolve(star, attr, depth + 1)
        if found is not None:
            return found
    return None


def _named(module: Module, expr: ast.expr, depth: int) -> tuple[Module, ast.AST] | None:
    """What a name (`Base`) or dotted name (`pl.LightningModule`) in `module`'s source refers to."""
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    head, *rest = reversed(parts)
    if not rest:
        return _resolve(module.name, head, depth + 1)
    source, name = module.imports.get(head, (None, None))
    if source is None:
        return None
    prefix = f"{source}.{name}" if name else source
    *mods, attr = [prefix, *rest]
    return _resolve(".".join(mods), attr, depth + 1)


def _params(module: Module, node: ast.AST, depth: int) -> tuple[Params, bool] | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(node, ast.FunctionDef):
        return _function(module, node, skip_first=False)
    if isinstance(node, ast.ClassDef):
        return _class(module, node, depth)
    if isinstance(node, ast.Call):
        return _partial(module, node, depth)
    return None


def _class(module: Module, node: ast.ClassDef, depth: int) -> tuple[Params, bool] | None:
    decorators = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
    if decorators:
        return _dataclass(module, node) if set(decorators) <= DATACLASS_NAMES else None
    params: Params = {}
    chain = 0  # the `__init__`s read so far, as in checks.signature_of
    while True:
        init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
        if init is not None:
            own, open_ended = _function(module, init, skip_first=True)
            for name, (param, hint) in own.items():
                if chain and param.default is inspect.Parameter.empty:
                    param = param.replace(default=None)  # a base's required argument comes from the subclass
                params.setdefault(name, (param, hint))
            if not open_ended:
                return params, False
            chain += 1
        bases = [b for b in node.bases if not (isinstance(b, ast.Name) and b.id == "object")]
        if not bases:
            return params, True  # the chain ended in `**kwargs`, or no class in it has an `__init__`
        if len(bases) > 1:
            return None  # the MRO of several bases is left to the import pass
        found = _named(module, bases[0], depth + 1)
        if found is None or not isinstance(found[1], ast.ClassDef) or found[1].decorator_list:
            return None
        module, node = found
        depth += 1
        if depth > MAX_DEPTH:
            return None


def _dataclass(module: Module, node: ast.ClassDef) -> tuple[Params, bool] | None:
    if node.bases:
        return None
    params: Params = {}
    for stmt in node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):
            continue
        default: Any = inspect.Parameter.empty
        if stmt.value is not None:
            default = _field_default(stmt.value)
        param = inspect.Parameter(stmt.target.id, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
        params[stmt.target.id] = (param, _hint(module, stmt.annotation))
    return params, False


def _field_default(value: ast.expr) -> Any:
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("field", "dataclasses.field"):
        for kw in value.keywords:
            if kw.arg == "default":
                return _literal(kw.value)
        return NOT_LITERAL
    return _literal(value)


def _partial(module: Module, call: ast.Call, depth: int) -> tuple[Params, bool] | None:
    """`name = partial(f, *args, **kw)` or a factory making one (`preset("resnet20", cifar_resnet, 20)`):
    the first callable argument's parameters, less those the call binds."""
    if not _makes_partial(module, call.func, depth):
        return None
    for i, arg in enumerate(call.args):
        found = _named(module, arg, depth + 1) if isinstance(arg, (ast.Name, ast.Attribute)) else None
        if found is None or not isinstance(found[1], (ast.FunctionDef, ast.ClassDef)):
            continue
        inner = _params(*found, depth + 1)
        if inner is None:
            return None
        params, open_ended = inner
        bound = {kw.arg for kw in call.keywords if kw.arg} | set(list(params)[: len(call.args) - i - 1])
        return {k: v for k, v in params.items() if k not in bound}, open_ended
    return None


def _makes_partial(module: Module, func: ast.expr, depth: int) -> bool:
    """Whether calling `func` makes a functools.partial (partial, a subclass, a function annotated so)."""
    if depth > MAX_DEPTH or not isinstance(func, (ast.Name, ast.Attribute)):
        return False
    spelled = ast.unparse(func)
    if spelled == "functools.partial" or module.imports.get(spelled) == ("functools", "partial"):
        return True
    found = _named(module, func, depth + 1)
    if found is not None and isinstance(found[1], ast.FunctionDef):
        owner, returns = found[0], found[1].returns
        if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
            returns = ast.parse(returns.value, mode="eval").body
        return returns is not None and _makes_partial(owner, returns, depth + 1)
    if found is None or not isinstance(found[1], ast.ClassDef):
        return False
    return any(_makes_partial(found[0], base, depth + 1) for base in found[1].bases)


def _function(module: Module, fn: ast.FunctionDef, skip_first: bool) -> tuple[Params, bool]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + list(args.defaults)
    kinds = [inspect.Parameter.POSITIONAL_ONLY] * len(args.posonlyargs)
    kinds += [inspect.Parameter.POSITIONAL_OR_KEYWORD] * len(args.args)
    entries = list(zip(positional, defaults, kinds, strict=True))
    entries += [
        (arg, inspect.Parameter.empty if d is None else d, inspect.Parameter.KEYWORD_ONLY)
        for arg, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    params: Params = {}
    for index, (arg, default, kind) in enumerate(entries):
        if (skip_first and index == 0) or arg.arg in ("self", "cls"):
            continue
        value = default if default is inspect.Parameter.empty else _literal(default)
        param = inspect.Parameter(arg.arg, kind, default=value)
        params[arg.arg] = (param, _hint(module, arg.annotation))
    return params, args.kwarg is not None


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_LITERAL


class _Names(dict):
    """An annotation's names: typing's and the builtins as they are; a class of another module as a
    stand-in class (as strict for a config value as the real one: no number or string is one); a type
    alias as its value; anything else as `Any`."""

    def __init__(self, module: Module, depth: int) -> None:
        super().__init__()
        self.module, self.depth = module, depth

    def __missing__(self, name: str) -> Any:
        source, attr = self.module.imports.get(name, (None, None))
        if source is not None and source.split(".")[0] in SAFE_MODULES:
            loaded = importlib.import_module(source)
            return getattr(loaded, attr) if attr else loaded
        if source is not None and attr is None:
            return _ModuleNames(source, self.depth)
        if name in self.module.defs or source is not None:
            return _stand_in(self.module.name, name, self.depth)
        return getattr(builtins, name, Any)


class _ModuleNames:
    """`torch` in `torch.Tensor`: attributes are looked up as the module's own names."""

    def __init__(self, module: str, depth: int) -> None:
        self._module, self._depth = module, depth

    def __getattr__(self, attr: str) -> Any:
        if _file(f"{self._module}.{attr}") is not None and attr not in getattr(
            _module(self._module), "defs", {}
        ):
            return _ModuleNames(f"{self._module}.{attr}", self._depth)
        return _stand_in(self._module, attr, self._depth)


# bases under which a number or a string may be an instance (the checker would be wrong to refuse it)
_OPEN_BASES = {"int", "float", "str", "bool", "complex", "Enum", "IntEnum", "StrEnum", "Flag", "Protocol"}


def _stand_in(module_name: str, name: str, depth: int) -> Any:
    found = _resolve(module_name, name, depth + 1) if depth < MAX_DEPTH else None
    if found is None:
        return Any
    owner, node = found
    if isinstance(node, ast.ClassDef):
        return _stand_in_class(owner.name, node.name) if _closed(owner, node, depth + 1) else Any
    if isinstance(node, ast.expr):
        return _hint(owner, node, depth + 1)  # a type alias: its value
    return Any


@functools.cache
def _stand_in_class(module: str, name: str) -> type:
    return type(name, (), {"__module__": module})


def _closed(module: Module, node: ast.ClassDef, depth: int) -> bool:
    """Whether no config scalar can be an instance: no str, int, Enum or Protocol base, no metaclass."""
    if node.keywords or depth > MAX_DEPTH:
        return False
    for base in node.bases:
        spelled = ast.unparse(base)
        if spelled == "abc.ABC" or module.imports.get(spelled) == ("abc", "ABC"):
            continue  # an abstract base: isinstance works as for any class
        if spelled.rsplit(".", 1)[-1].split("[")[0] in _OPEN_BASES:
            return False
        found = _named(module, base, depth + 1) if isinstance(base, (ast.Name, ast.Attribute)) else None
        if found is not None and isinstance(found[1], ast.ClassDef) and not _closed(*found, depth + 1):
            return False
        source = module.imports.get(spelled.split(".")[0], ("", None))[0]
        if source.split(".")[0] in SAFE_MODULES | {"numbers", "enum"}:
            return False
    return True


def _hint(module: Module, annotation: ast.expr | None, depth: int = 0) -> Any:
    if annotation is None:
        return Any
    expr = annotation
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            expr = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return Any
    try:
        # only typing's and builtins' names have values here; everything else is Any (see _Names)
        return eval(
            compile(ast.Expression(expr), "<annotation>", "eval"), {"__builtins__": {}}, _Names(module, depth)
        )
    except Exception:
        return Any

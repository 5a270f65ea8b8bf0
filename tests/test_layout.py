"""The house rules of the package layout, read from the source, so the tree does not slide back.

One home per concern (docs/design.md): a task gets what it needs as constructor arguments, from the
batch or from the Trainer, never from run plumbing or a DataModule's module; a network imports
nothing of the suite but `errors`; a DataModule knows no task or network; the report reads files
only; `config/` checks and builds nothing. Imports inside functions count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "lightsuite"

# folder -> suite modules it may not import (a prefix forbids the module and everything below it)
FORBIDDEN = {
    "tasks": (
        "lightsuite.run",
        "lightsuite.config",
        "lightsuite.launch",
        "lightsuite.reporting",
        "lightsuite.data",
    ),
    "data": (
        "lightsuite.tasks",
        "lightsuite.models",
        "lightsuite.run",
        "lightsuite.launch",
        "lightsuite.config",
    ),
    "reporting": (
        "lightsuite.tasks",
        "lightsuite.data",
        "lightsuite.models",
        "lightsuite.run",
        "lightsuite.launch",
    ),
    # the resolvers' functions come from run/loggers.py (the W&B id lives beside the loggers)
    "config": (
        "lightsuite.tasks",
        "lightsuite.data",
        "lightsuite.models",
        "lightsuite.launch",
        "lightsuite.run.build",
    ),
}
# a network imports nothing of the suite but its errors
MODELS_MAY_IMPORT = ("lightsuite.errors",)
MAX_LINES = 400
# imports by name at run time: these folders get objects as arguments, and the report reads files
DYNAMIC = {"get_class", "get_object", "get_method", "instantiate", "import_module", "__import__"}
NO_DYNAMIC_IMPORTS = ("reporting", "tasks", "models", "data")


def suite_imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every `lightsuite...` import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            # `from lightsuite import run` imports the module lightsuite.run
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "lightsuite"]
    return [(line, mod) for line, mod in found if mod == "lightsuite" or mod.startswith("lightsuite.")]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import that breaks a rule, as `file:line imports module`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        folder = path.relative_to(package).parts[0]
        where = path.relative_to(package)
        for line, module in suite_imports(path, package):
            if folder == "models":
                if not (_under(module, "lightsuite.models") or module in MODELS_MAY_IMPORT):
                    found.append(
                        f"{where}:{line} imports {module} (a network imports only lightsuite.errors)"
                    )
            elif any(_under(module, banned) for banned in FORBIDDEN.get(folder, ())):
                found.append(f"{where}:{line} imports {module} ({folder}/ may not)")
        if folder in NO_DYNAMIC_IMPORTS:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Name | ast.Attribute | ast.alias):
                    name = getattr(node, "id", None) or getattr(node, "attr", None) or node.name
                    if name.rsplit(".", 1)[-1] in DYNAMIC:
                        found.append(f"{where}:{node.lineno} uses {name} ({folder}/ imports nothing by name)")
    return found


def test_no_module_imports_across_the_house_rules():
    assert violations() == []


def test_the_rule_check_sees_a_forbidden_import(tmp_path):
    """A task reaching into run plumbing inside a function is caught; a network importing errors is not."""
    package = tmp_path / "lightsuite"
    (package / "tasks").mkdir(parents=True)
    (package / "models").mkdir()
    (package / "tasks" / "bad.py").write_text(
        "from lightsuite.errors import ConfigError\n\ndef f():\n    from lightsuite.run.build import build\n"
    )
    (package / "models" / "net.py").write_text(
        "from lightsuite.errors import ConfigError\nimport lightsuite.io\n"
    )
    (package / "reporting").mkdir()
    (package / "reporting" / "page.py").write_text("import hydra.utils\n\nhydra.utils.get_class('x.Y')\n")
    assert violations(package) == [
        "models/net.py:2 imports lightsuite.io (a network imports only lightsuite.errors)",
        "reporting/page.py:3 uses get_class (reporting/ imports nothing by name)",
        "tasks/bad.py:4 imports lightsuite.run.build (tasks/ may not)",
    ]


def test_no_source_file_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "src").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_old_utils_folder_is_gone():
    assert not (PACKAGE / "utils").exists()


@pytest.mark.parametrize("table", sorted((ROOT / "tools" / "mutations").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_mutant_still_finds_its_code(table: Path):
    """The mutation tables (docs/testing.md) name code by file and exact text: a move carries them along."""
    lost = []
    for entry in yaml.safe_load(table.read_text()) or []:
        path = ROOT / entry["file"]
        count = path.read_text().count(entry["old"]) if path.is_file() else 0
        if count != 1:
            lost.append(f"{entry['file']}: {entry['old']!r} occurs {count} times")
        for test in entry["tests"]:
            test_file = test.split("::")[0]
            if test_file.startswith("tests/") and not (ROOT / test_file).exists():
                lost.append(f"{entry['file']}: its test {test_file} does not exist")
    assert lost == []

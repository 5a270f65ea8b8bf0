"""The docs show commands that work as shown, files that exist, and links that resolve.

The console blocks (```bash, ```console, ```sh, plain ```) of README.md and docs/*.md are read line
by line, backslash continuations joined, `&&`/`;`/`|` chains split. A `lightsuite-train` command
is composed in-process the way the entry point composes it, with `dry_run=true` added, and handed
to `train(cfg)`: the config is checked against every target's signature and the network and task
are built, loading no data, so `data=cifar10` checks offline. (An image folder's classes size the
network even in a dry run: a `data.path` of the docs that is not there gets two empty class
folders in its place.) A multirun is expanded as the basic sweeper would, and each value of each
swept key is dry-run once.
`lightsuite-eval` and `lightsuite-sample` need a checkpoint: their configs are composed with the
command's overrides (placeholders such as `RUN/...` kept as strings) and checked.
`lightsuite-report`'s arguments are parsed as the command parses them. A console example of a
refusal (`$ command`, then `error: ...`) must be refused with that message, unless the refusal is
about what a checkpoint holds (the doc's example path holds none): that one must compose.
`make` targets must exist in the Makefile (`make train ARGS="..."` is also a train command); the
scripts, script options, test paths, pytest markers and package extras other commands name must
exist, and so must every `folder/file.py` the prose names. Every relative link and `#anchor`
resolves, and README.md links every docs page.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from importlib.metadata import metadata
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from lightsuite.config.checks import check_config
from lightsuite.errors import LightsuiteError, user_error
from lightsuite.report import parse_args
from lightsuite.reporting.results import chosen
from lightsuite.train import train

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONSOLE_FENCES = {"", "bash", "console", "sh", "shell"}
# entry point -> the config it composes (lightsuite-report composes none)
ENTRY_POINTS = {
    "lightsuite-train": "train",
    "lightsuite-eval": "eval",
    "lightsuite-sample": "sample",
    "lightsuite-report": None,
}
MODULES = {f"lightsuite.{name}": f"lightsuite-{name}" for name in ("train", "eval", "sample", "report")}
# tools the docs show that are not this project's to check
EXTERNAL = {
    "wandb", "tensorboard", "mlflow", "mutmut", "scontrol", "scancel", "squeue", "srun", "sbatch",
    "optuna-dashboard",
}  # fmt: skip
ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")
# a documented refusal may be cut short: `...; ...` or `...`
ELIDED = re.compile(r"(;\s*)?\.\.\.$")
MAKEFILE = (ROOT / "Makefile").read_text()
MAKE_TARGETS = set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, flags=re.M))
# what `pip install lightsuite[x]` accepts
EXTRAS = set(metadata("lightsuite").get_all("Provides-Extra") or [])


@dataclass(frozen=True)
class Command:
    """One simple command of a doc: where it is, its words, the cwd and environment its line gives it."""

    doc: str
    line: int
    words: tuple[str, ...]
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    # the `error: ...` a console example shows for it
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def __str__(self) -> str:
        return f"{self.id}: {shlex.join(self.words)}"


def _split_fences(text: str) -> tuple[list[tuple[str, list[tuple[int, str]]]], list[tuple[int, str]]]:
    """The fenced blocks as (language, [(line number, line)]) and the prose lines outside them."""
    blocks, prose, current, language = [], [], None, ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if current is None:
                language, current = stripped[3:].strip().lower(), []
            else:
                blocks.append((language, current))
                current = None
        elif current is not None:
            current.append((number, line))
        else:
            prose.append((number, line))
    return blocks, prose


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines joined across trailing backslashes, each with the number of its first line."""
    joined, start, parts = [], None, []
    for number, line in lines:
        start = number if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        joined.append((start, " ".join([*parts, line])))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at `&&`, `;`, `|`), comments and elisions dropped.

    An unquoted `<` or `>` stays a word of its own: a shell would read a redirection there.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|<>")
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if set(token) <= set("&;|"):
            segments.append([])
        elif token != "...":  # an elision, not an argument
            segments[-1].append(token)
    return [s for s in segments if s]


def _program(word: str) -> str:
    return word.removeprefix(".venv/bin/")


def _is_command(words: list[str]) -> bool:
    program = _program(words[0])
    known = program in {"make", "python", "python3", "pip", "bash", "cd", *EXTERNAL}
    return known or program.startswith("lightsuite")


def doc_commands(path: Path) -> list[Command]:
    """Every command of the console blocks of one doc; a block's `cd` moves the cwd of the lines after it."""
    doc = str(path.relative_to(ROOT))
    found: list[Command] = []
    for language, lines in _split_fences(path.read_text())[0]:
        if language not in CONSOLE_FENCES:
            continue
        cwd, logical = ROOT, _logical_lines(lines)
        for index, (number, line) in enumerate(logical):
            text = line.strip()
            prompt = text.startswith("$ ")
            if language == "console" and not prompt:
                continue  # output
            text = text.removeprefix("$ ")
            following = logical[index + 1][1].strip() if index + 1 < len(logical) else ""
            error = following.removeprefix("error: ") if prompt and following.startswith("error:") else None
            try:
                segments = _segments(text)
            except ValueError:  # unbalanced quotes: a tree or output line, or a broken command
                if language:
                    found.append(Command(doc, number, ("<does not parse>", text)))
                continue
            for words in segments:
                env = {}
                while len(words) > 1 and ENV_ASSIGNMENT.match(words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                if not language and not _is_command(words):
                    continue  # a plain block's output or listing
                if words[0] == "cd":
                    cwd = cwd / words[1] if len(words) == 2 and (cwd / words[1]).is_dir() else cwd
                    continue
                found.append(Command(doc, number, tuple(words), cwd, env, error))
    return found


def entry_point(cmd: Command) -> tuple[str, list[str]] | None:
    """(entry point, arguments) of `lightsuite-x ...`, `python -m lightsuite.x ...`, `make train ARGS=...`."""
    words = cmd.words
    program = _program(words[0])
    if program in ENTRY_POINTS:
        return program, list(words[1:])
    if program.startswith("python") and len(words) > 2 and words[1] == "-m" and words[2] in MODULES:
        return MODULES[words[2]], list(words[3:])
    if program == "make" and "train" in words[1:]:
        args = [w.partition("=")[2] for w in words[1:] if w.startswith("ARGS=")]
        return "lightsuite-train", shlex.split(args[0]) if args else []
    return None


ALL = [cmd for doc in DOCS for cmd in doc_commands(doc)]
LIGHTSUITE = [cmd for cmd in ALL if entry_point(cmd)]
# every make line (its targets) and every other program; redirections fail there
REDIRECTS = {"<", ">", ">>", "<<"}
OTHERS = [cmd for cmd in ALL if cmd.words[0] == "make" or not entry_point(cmd) or REDIRECTS & set(cmd.words)]


def hydra_overrides(cmd: Command, args: list[str]) -> tuple[list[str], bool]:
    """The Hydra overrides of a command line, and whether it is a multirun (`-m`)."""
    overrides, multirun, rest = [], False, list(args)
    while rest:
        word = rest.pop(0)
        if word in ("-m", "--multirun"):
            multirun = True
        elif word == "--config-dir" or word.startswith("--config-dir="):
            folder = word.partition("=")[2] or rest.pop(0)
            overrides.append(f"hydra.searchpath=[file://{(cmd.cwd / folder).resolve()}]")
        elif word.startswith("-"):
            raise AssertionError(f"{cmd}: this test does not know the flag {word!r}; teach it or drop it")
        else:
            overrides.append(word)
    return overrides, multirun


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a multirun in the basic sweeper's order, only those that try a value not yet tried."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    chosen, tried = [], set()
    for job in jobs:
        if not set(job) <= tried:
            chosen.append(job)
            tried |= set(job)
    return chosen


def with_own_data(job: list[str], tmp_path: Path) -> list[str]:
    """An image folder the docs name but this machine lacks (`data.path=/data/flowers`): two empty classes.

    The folder's sub-folders are its classes, and the network's output size needs them even in a dry run.
    """
    absent = [o for o in job if o.startswith("data.path=") and not Path(o.partition("=")[2]).exists()]
    if "data=image_folder" not in job or not absent:
        return job
    for name in ("a", "b"):
        (tmp_path / "own_images" / name).mkdir(parents=True, exist_ok=True)
    return [o for o in job if o not in absent] + [f"data.path={tmp_path / 'own_images'}"]


def _one_line(exc: BaseException) -> str:
    """What the entry point prints: the suite's own error where Hydra's instantiation wraps it."""
    return " ".join(str(user_error(exc) or exc).split())


@pytest.fixture
def command_env(cmd: Command, monkeypatch):
    """The command's PYTHONPATH (relative to its cwd) importable, as in its shell."""
    for folder in filter(None, cmd.env.get("PYTHONPATH", "").split(":")):
        monkeypatch.syspath_prepend(str((cmd.cwd / folder).resolve()))


@pytest.mark.parametrize("cmd", [pytest.param(c, id=c.id) for c in LIGHTSUITE])
def test_doc_command_composes_and_checks(cmd: Command, command_env, make_cfg, tmp_path):
    program, args = entry_point(cmd)
    if program == "lightsuite-report":
        parsed = parse_args(args)
        if parsed.claims is not None:  # the lecture's claims: names it knows, no DIR
            assert chosen(parsed.claims) and not parsed.dirs, f"{cmd}: --claims takes no DIR"
        else:
            assert parsed.dirs, f"{cmd}: no DIR to report on"
        return
    overrides, multirun = hydra_overrides(cmd, args)
    for job in sweep_jobs(overrides) if multirun else [overrides]:
        try:
            if program == "lightsuite-train":
                cfg = make_cfg("train", [*with_own_data(job, tmp_path), "dry_run=true"])
                assert train(cfg) == {}, f"{cmd}: not a dry run"
            else:
                check_config(make_cfg(ENTRY_POINTS[program], job))
        except (LightsuiteError, HydraException, OmegaConfBaseException) as exc:
            if cmd.error is None:
                raise AssertionError(f"{cmd}\n  job {' '.join(job)}\n  {_one_line(exc)}") from exc
            shown = ELIDED.sub("", cmd.error).strip()
            said = _one_line(exc)
            assert said.startswith(shown), f"{cmd}: the doc shows `{shown}`, the command says `{said}`"
            return
    if cmd.error is not None:
        # what a checkpoint holds cannot be refused without one; the command composed and checked
        absent = [
            a for a in args if a.startswith("ckpt_path=") and not (cmd.cwd / a.partition("=")[2]).is_file()
        ]
        assert absent, f"{cmd}: the doc shows it refused ({cmd.error}), but it passed"


def _python_script(cmd: Command, words: list[str], markers: set[str]) -> None:
    if words[:2] == ["-m", "pytest"]:
        rest = words[2:]
        for before, word in zip(["", *rest], rest, strict=False):
            if before == "-m":
                used = set(re.findall(r"\w+", word)) - {"and", "or", "not"}
                assert used <= markers, f"{cmd}: unknown pytest marker(s) {used - markers}"
            elif word.startswith("tests"):
                assert (cmd.cwd / word.split("::")[0]).exists(), f"{cmd}: {word} does not exist"
        return
    assert words and words[0].endswith(".py"), f"{cmd}: python runs neither a script nor a known module"
    script = cmd.cwd / words[0]
    assert script.is_file(), f"{cmd}: {words[0]} does not exist"
    source = script.read_text()
    for word in words[1:]:
        if word.startswith("--"):
            flag = word.partition("=")[0]
            assert f'"{flag}"' in source, f"{cmd}: {words[0]} has no option {flag}"
        elif "/" in word:
            assert list(cmd.cwd.glob(word)), f"{cmd}: {word} matches no file"


@pytest.mark.parametrize("cmd", [pytest.param(c, id=c.id) for c in OTHERS])
def test_doc_command_names_what_exists(cmd: Command, pytestconfig):
    """Make targets, scripts, test paths, pytest markers and extras exist; no unknown programs."""
    program, words = _program(cmd.words[0]), list(cmd.words[1:])
    assert program != "<does not parse>", f"{cmd.id}: unbalanced quotes in {words[0]!r}"
    assert not REDIRECTS & set(words), f"{cmd}: a shell reads `<`/`>` as a redirection; quote it or use RUN"
    assert not program.startswith("lightsuite"), f"{cmd}: {program} is not a lightsuite command"
    if program == "make":
        targets = [w for w in words if "=" not in w and not w.startswith("-")]
        assert targets and set(targets) <= MAKE_TARGETS, (
            f"{cmd}: no make target {set(targets) - MAKE_TARGETS}"
        )
    elif program.startswith("python"):
        _python_script(cmd, words, {m.split(":")[0] for m in pytestconfig.getini("markers")})
    elif program == "bash":
        assert (cmd.cwd / words[0]).is_file(), f"{cmd}: {words[0]} does not exist"
    elif program == "pip":
        for word in words:
            for wanted in re.findall(r"\[([\w,-]+)\]", word):
                assert set(wanted.split(",")) <= EXTRAS, f"{cmd}: lightsuite has no extra [{wanted}]"
    else:
        assert program in EXTERNAL, f"{cmd}: unknown program {program}; add it to EXTERNAL if it is meant"


def test_the_docs_show_commands_of_every_kind():
    """Against an extractor that silently finds nothing."""
    programs = {entry_point(cmd)[0] for cmd in LIGHTSUITE}
    assert programs == set(ENTRY_POINTS)
    assert len(LIGHTSUITE) >= 50
    assert any(cmd.error for cmd in LIGHTSUITE)
    assert any("-m" in cmd.words for cmd in LIGHTSUITE)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for _, line in _split_fences(path.read_text())[1]:
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = _slug(match.group(1))
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                slug = f"{slug}-{seen[slug]}"
                seen[slug] = 0
    return set(seen)


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image outside code blocks that is not a URL."""
    found = []
    for number, line in _split_fences(path.read_text())[1]:
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if not re.match(r"[a-z]+:", target):
                found.append((number, target))
    return found


LINKS = [(doc, number, target) for doc in DOCS for number, target in relative_links(doc)]


@pytest.mark.parametrize(
    ("doc", "target"),
    [pytest.param(d, t, id=f"{d.relative_to(ROOT)}:{n}:{t}") for d, n, t in LINKS],
)
def test_doc_link_resolves(doc: Path, target: str):
    file, _, anchor = target.partition("#")
    linked = (doc.parent / file).resolve() if file else doc
    assert linked.exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), f"{doc.relative_to(ROOT)}: {linked.name} has no heading #{anchor}"


def code_paths(path: Path) -> list[str]:
    """Every `folder/file.py` (or `.sh`) the prose of a doc names in backticks."""
    found = []
    for _, line in _split_fences(path.read_text())[1]:
        found += re.findall(r"`([\w./-]+/[\w.-]+\.(?:py|sh))(?:::\w+)?`", line)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_code_paths_the_docs_name_exist(doc: Path):
    """`run/build.py` or `tests/run/test_resume.py`: from the repository or the package root."""
    package = ROOT / "src" / "lightsuite"
    missing = [p for p in code_paths(doc) if not ((ROOT / p).exists() or (package / p).exists())]
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def test_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in relative_links(ROOT / "README.md")}
    unlinked = sorted(p.name for p in set(DOCS[1:]) - linked)
    assert not unlinked, f"docs pages README.md does not link to: {unlinked}"

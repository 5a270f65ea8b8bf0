"""What ran, where and from which code: the `provenance` record of `run.json` and of every checkpoint.

A result on a shared cluster is only as good as the answer to "which code, which command, which
node": this module collects the command line, the git commit (and the uncommitted diff, written to
`git.diff` beside `run.json`), library versions, host, devices, SLURM ids and start and end times.

A run dir that a resume or a requeue continues keeps one *segment* per process that ran in it
(start, end, host, SLURM ids, command, commit), so a job requeued twice shows three; the top-level
fields describe the latest. Nothing here ever fails a run: no git, no tree, a slow filesystem, a
foreign repo owner all come out as `"git": null` with a `git_reason`.

Light on purpose (no torch or Lightning at module level): `collect` runs before any work.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

PROVENANCE_KEY = "provenance"
DIFF_FILE = "git.diff"
# the diff of the working directory's own repo (a user's project with its own conf), when it is another one
PROJECT_DIFF_FILE = "git-project.diff"
# git on a network filesystem can hang: a record is never worth a stuck job
GIT_TIMEOUT_S = 10.0
# a tree with thousands of untracked files (a data dir) should not bloat run.json
MAX_UNTRACKED = 200
PACKAGES = ("torch", "pytorch_lightning", "hydra-core", "torchmetrics", "lightsuite")
SLURM_VARS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "nodelist": "SLURM_JOB_NODELIST",
}
# what each segment keeps of the record it was started with
SEGMENT_KEYS = ("start", "end", "host", "slurm", "command", "commit", "dirty", "diffs")


def now() -> str:
    """The local time in ISO 8601 with its UTC offset, so runs on nodes in other zones compare."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


class GitUnavailable(Exception):
    """Why a tree's commit cannot be recorded (no git, not a tree, a timeout): a reason, never an error."""


def _git(args: Sequence[str], cwd: Path) -> str:
    """One git command's stdout; quiet (stderr dropped), bounded in time, never taking the index lock."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitUnavailable("no git binary on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitUnavailable(f"git {args[0]} took over {GIT_TIMEOUT_S:g} s in {cwd}") from exc
    except OSError as exc:
        raise GitUnavailable(f"git could not run in {cwd}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        raise GitUnavailable(f"git {args[0]} failed in {cwd} (not a git tree, or one git refuses to read)")
    return done.stdout.decode(errors="replace")


def git_root(path: Path) -> Path:
    """The top of the git tree holding `path`; `GitUnavailable` when there is none."""
    return Path(_git(["rev-parse", "--show-toplevel"], path).strip())


def git_state(root: Path) -> tuple[dict[str, Any], str]:
    """A tree's commit, whether it is dirty and its untracked files, and its uncommitted diff ("" when clean).

    `git diff HEAD` holds staged and unstaged changes to tracked files; untracked files are only listed
    (their content may be data or secrets), at the head of the diff file and in the record.
    """
    commit = _git(["rev-parse", "HEAD"], root).strip()
    status = _git(["status", "--porcelain", "--untracked-files=normal"], root).splitlines()
    untracked = [line[3:] for line in status if line.startswith("?? ")]
    dirty = bool(status)
    diff = ""
    if dirty:
        listed = "".join(f"# untracked: {name}\n" for name in untracked)
        diff = f"# uncommitted changes to {root} at {commit}\n{listed}" + _git(["diff", "HEAD"], root)
    record = {
        "root": str(root),
        "commit": commit,
        "dirty": dirty,
        "untracked": untracked[:MAX_UNTRACKED],
        "untracked_count": len(untracked),
    }
    return record, diff


def code_tree(package_dir: Path) -> Path:
    """The git tree whose files are the lightsuite package that runs (an editable install's checkout).

    A package installed into a virtualenv inside some other repo is not that repo's code: the
    package's own `__init__.py` must be tracked by the tree.
    """
    root = git_root(package_dir)
    if not _git(["ls-files", "--", "__init__.py"], package_dir).strip():
        raise GitUnavailable(
            f"lightsuite runs from {package_dir}, which {root} does not track (an installed copy)"
        )
    return root


def versions() -> dict[str, str | None]:
    """Python's and the main libraries' versions, from installed metadata (no imports)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def slurm_ids(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """This process's SLURM job, array and node ids; None outside SLURM."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env:
        return None
    found = {key: env.get(var) for key, var in SLURM_VARS.items()}
    found["nodelist"] = found["nodelist"] or env.get("SLURM_NODELIST")
    return found


def command() -> dict[str, Any]:
    """The command line as run and, under Hydra's runtime, the task overrides it parsed from it."""
    overrides = None
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = list(HydraConfig.get().overrides.task)
    except Exception:  # no Hydra runtime (a test composing configs): the argv is still there
        overrides = None
    return {"argv": list(sys.argv), "overrides": overrides}


def devices(trainer: Any = None) -> dict[str, Any]:
    """CPU count and torch's threads, and with a trainer its accelerator and devices (CUDA names).

    Without a trainer CUDA is not touched: initialising it before Lightning forks ranks would break them.
    """
    # the cores this process may use (a SLURM task's share), not the node's
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    found: dict[str, Any] = {"cpu_count": cores}
    torch = sys.modules.get("torch")
    if torch is not None:
        found["torch_threads"] = torch.get_num_threads()
    if trainer is None:
        return found
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    found.update(accelerator=accelerator, device_count=trainer.num_devices)
    if accelerator == "cuda" and torch is not None:
        # a driver that answers nothing: the count is still worth keeping
        with contextlib.suppress(Exception):
            found["device_names"] = [torch.cuda.get_device_name(i) for i in trainer.device_ids]
    return found


def collect(
    package_dir: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """This process's provenance, and the diff files to write beside it (`{name: text}`, none when clean).

    `package_dir` is lightsuite's own source (by default, where this module was imported from);
    `cwd` the working directory, recorded as `project_git` when it is in another git tree.
    """
    package = Path(package_dir) if package_dir else Path(__file__).resolve().parents[1]
    here = Path(cwd) if cwd else Path.cwd()
    record: dict[str, Any] = {
        "start": now(),
        "end": None,
        "command": command(),
        "host": socket.gethostname(),
        "slurm": slurm_ids(),
        "versions": versions(),
        "devices": devices(),
    }
    diffs: dict[str, str] = {}
    try:
        root = code_tree(package)
        record["git"], diff = git_state(root)
    except GitUnavailable as exc:
        root, diff = None, ""
        record["git"], record["git_reason"] = None, str(exc)
    if record["git"] is not None:
        _attach(record["git"], diff, DIFF_FILE, diffs)
    try:
        project = git_root(here)
        if project != root:
            record["project_git"], project_diff = git_state(project)
            _attach(record["project_git"], project_diff, PROJECT_DIFF_FILE, diffs)
    except GitUnavailable:
        pass  # a working dir outside any repo is the common case, not worth a reason
    record["commit"] = (record["git"] or {}).get("commit")
    record["dirty"] = (record["git"] or {}).get("dirty")
    record["diffs"] = sorted(diffs)
    return record, diffs


def _attach(tree: dict[str, Any], diff: str, name: str, diffs: dict[str, str]) -> None:
    tree["diff"] = name if diff else None
    if diff:
        diffs[name] = diff


def segment(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a run dir keeps of one process's record once a later one continues it."""
    return {key: record.get(key) for key in SEGMENT_KEYS}


def continued(record: dict[str, Any], earlier: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """`record` as the latest segment after those of an earlier `run.json` provenance (none: the first).

    Also the renames that keep the earlier segment's diff files (`git.diff` -> `git.2.diff` for
    segment 2), which the new segment's own `git.diff` would otherwise replace.
    """
    previous = earlier.get("segments", []) if isinstance(earlier, dict) else []
    previous = [dict(s) for s in previous if isinstance(s, dict)]
    renames: dict[str, str] = {}
    for number, old in enumerate(previous, start=1):
        kept = []
        for name in old.get("diffs") or []:
            if name in (DIFF_FILE, PROJECT_DIFF_FILE):
                stem, _, ext = name.rpartition(".")
                renames[name] = f"{stem}.{number}.{ext}"
                name = renames[name]
            kept.append(name)
        old["diffs"] = kept
    return {**record, "segments": [*previous, segment(record)]}, renames


def ended(record: dict[str, Any], when: str | None = None) -> dict[str, Any]:
    """`record` with its end time set, on the top level and on its latest segment."""
    when = when or now()
    segments = [dict(s) for s in record.get("segments", [])]
    if segments:
        segments[-1]["end"] = when
    return {**record, "end": when, "segments": segments}

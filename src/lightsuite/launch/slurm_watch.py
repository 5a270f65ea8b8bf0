"""What the SLURM launcher decides about a submitted job, from what it sees of it: a plain function.

`advance` takes a job's state, its result file if it has appeared, squeue's row for it and the time,
and returns the job's next state, the lines to print and a refusal that ends the sweep; `given_up`
and `failure` say when to stop waiting for a job and what to record for it. `slurm_submit.watch` does the
looking (squeue, result files), the printing and the cancelling, so these can be tested by feeding
them recorded squeue answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, NamedTuple

# squeue states after which a job never runs again; every other state may still lead to a result
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "REVOKED",
    "TIMEOUT",
}
# passing states not worth a line of their own
QUIET_STATES = {"COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}
# pending reasons that no amount of waiting resolves, with the fix (a drained node, a lowered
# partition limit and the like can pass: those are shown, not refused)
HOPELESS = {
    "PartitionConfig": "no node of the partition has what one job asks per node ({asked}): lower "
    "hydra.launcher.cpus_per_task, mem_gb or trainer.devices, or pick another hydra.launcher.partition",
    "BadConstraints": "no node satisfies hydra.launcher.constraint: fix or drop it",
    "InvalidAccount": "hydra.launcher.account is not valid on this cluster",
    "InvalidQOS": "hydra.launcher.qos is not valid on this cluster",
}
# seconds a finished job's result file may lag behind squeue (a shared file system; submitit waits
# 15 s too), and after a kill, which leaves no result to wait for (a job killed as it finished:
# its result was written before the kill)
RESULT_GRACE_S = 15.0
KILLED_GRACE_S = 5.0
KILLED_STATES = {"BOOT_FAIL", "CANCELLED", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"}
# seconds a submitted job may stay unlisted by squeue before it counts as lost
UNLISTED_S = 300.0


SQUEUE_FORMAT = "--Format=JobArrayID:|,State:|,Reason:|,NodeList:|,RestartCnt:|"


class Row(NamedTuple):
    """One job's row of squeue: its state, pending reason, nodes and restart count."""

    state: str
    reason: str = ""
    nodes: str = ""
    restarts: int = 0


class Unanswered(Enum):
    """The row of a job when squeue was not asked this time, or did not answer: nothing to learn."""

    NO_ANSWER = "squeue not asked this time, or it did not answer"


NO_ANSWER = Unanswered.NO_ANSWER


@dataclass(frozen=True)
class Watched:
    """What the watcher knows of one job: SLURM's last word on it and whether its result is in.

    Frozen: `advance` returns the next one, so that recorded squeue answers can be replayed.
    """

    number: int
    slurm_id: str
    submitted_at: float
    state: str = "SUBMITTED"
    reason: str = ""
    restarts: int = 0
    started: bool = False  # ran at some point: then a pending reason of the sweep is not hopeless
    ended_polls: int = 0  # squeue answers in a row that showed it ended
    ended_at: float | None = None  # when the first of them came
    collected: bool = False  # its result file was read
    done: bool = False  # and held its result
    error: str = ""  # the trace's last line of a job that failed outside Hydra's job runner


@dataclass(frozen=True)
class Outcome:
    """What a job's result file says: the trace's last line of a job that failed outside Hydra's
    job runner (`error`), or else the job's `job_status.json` (empty if it died before writing it).
    """

    error: str | None = None
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """A job's next state, the lines to print, and the refusal that ends the sweep (or None)."""

    job: Watched
    lines: tuple[str, ...] = ()
    refusal: str | None = None


def advance(
    job: Watched,
    now: float,
    row: Row | Unanswered | None = NO_ANSWER,
    result: Outcome | None = None,
    *,
    sweep_started: bool = False,
    objective: str | None = None,
    asked: str = "",
) -> Step:
    """One look at a job at `now`: its result file if it has appeared (`result`), then squeue's row
    (None: squeue answered without it). All the watcher decides is here, so that it can be tested
    with recorded answers; `watch` does the looking, printing and cancelling.

    `sweep_started`: whether a job of the sweep has started (a pending reason is hopeless only
    before); `asked`: what a job asks per node, for the refusal. A job whose result is in, or that
    was given up, takes no more rows.
    """
    name = f"slurm: job {job.number} ({job.slurm_id})"
    lines = []
    if result is not None and not job.collected:
        job = replace(job, collected=True, started=True)
        if result.error is not None:  # nothing left to wait for
            failed = replace(job, state="FAILED", ended_at=float("-inf"), ended_polls=2, error=result.error)
            return Step(failed)
        job = replace(job, done=True)
        lines.append(f"{name} {_said(result.status, objective)}")
    if row is NO_ANSWER or job.done or given_up(job, now):
        return Step(job, tuple(lines))
    if row is None:
        if job.state == "SUBMITTED" and now - job.submitted_at < UNLISTED_S:
            return Step(job, tuple(lines))  # not listed yet
        row = Row("GONE", restarts=job.restarts)
    if row.restarts > job.restarts:
        lines.append(f"{name} requeued (restart {row.restarts})")
    if (row.state, row.reason) != (job.state, job.reason) and row.state not in QUIET_STATES:
        lines.append(f"{name} {_shown(row.state, row.reason, row.nodes)}")
    ended = row.state in FINAL_STATES or row.state == "GONE"
    job = replace(
        job,
        state=row.state,
        reason=row.reason,
        restarts=row.restarts,
        started=job.started or row.state in ("RUNNING", "COMPLETING") or row.state in FINAL_STATES,
        # a job back from a final state (requeued after a node failure, by hand) waits again
        ended_at=(now if job.ended_at is None else job.ended_at) if ended else None,
        ended_polls=job.ended_polls + 1 if ended else 0,
    )
    refusal = None
    if row.state == "PENDING" and row.reason in HOPELESS and not (sweep_started or job.started):
        refusal = (
            f"SLURM can never start job {job.number} ({job.slurm_id}, pending: {row.reason}): "
            + HOPELESS[row.reason].format(asked=asked)
            + "; the sweep's pending jobs were cancelled"
        )
    return Step(job, tuple(lines), refusal)


def given_up(job: Watched, now: float) -> bool:
    """Ended in two squeue answers in a row, and longer ago than its result file may lag."""
    if job.ended_at is None or job.ended_polls < 2:
        return False
    grace = KILLED_GRACE_S if job.state in KILLED_STATES else RESULT_GRACE_S
    return now - job.ended_at > grace


def failure(job: Watched, recorded: dict[str, Any], log: str) -> str | None:
    """The error to record for a job given up without a result, or None when its own
    `job_status.json` (`recorded`) says it completed: its result was lost, not its run.
    """
    if recorded.get("status") == "completed":
        return None
    error = job.error or f"SLURM job {job.slurm_id} ended {job.state} without a result"
    return f"{error}; its log: {log}"


def trace_line(text: str) -> str:
    """The last line of the trace of a job that failed outside Hydra's job runner, from the text
    submitit raises (the trace between dashed lines, then where the logs are)."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("-", "You can check"))]
    return lines[-1] if lines else "failed outside Hydra's job runner"


def _said(status: dict[str, Any], objective: str | None) -> str:
    """A settled job's status and objective (or error), as its job_status.json says."""
    said = status.get("status", "done")
    if status.get("objective") is not None:
        said += f", {objective}={status['objective']:.4g}"
    elif status.get("error"):
        said += f": {status['error']}"
    return said


def _shown(state: str, reason: str, nodes: str) -> str:
    if state == "GONE":
        return "is not listed by squeue (any more)"
    if state == "PENDING" and reason and reason != "None":
        held = " (scontrol release it)" if "held" in reason.lower() else ""
        return f"PENDING ({reason}){held}"
    if state == "RUNNING" and nodes:
        return f"RUNNING on {nodes}"
    if state in ("REQUEUE_HOLD", "SPECIAL_EXIT"):
        return f"{state} (held: scontrol release it)"
    return state


def parse_squeue(stdout: str) -> dict[str, Row]:
    """The rows of squeue's output in `SQUEUE_FORMAT` (each field followed by `|`; none has a width,
    so none is cut), by job id (`<array>_<index>` for an element of an array)."""
    rows = {}
    for line in stdout.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) >= 5:
            restarts = int(parts[4]) if parts[4].isdigit() else 0
            rows[parts[0]] = Row(parts[1], parts[2], parts[3], restarts)
    return rows

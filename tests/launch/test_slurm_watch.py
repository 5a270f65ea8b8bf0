"""The SLURM watcher's decisions, fed squeue answers recorded on a real cluster: no cluster needed.

The rows below are lines squeue printed in the launcher's format (`SQUEUE_FORMAT`), recorded on
the one-node cluster of scripts/slurm-local.sh (SLURM 22.05, node `vm`, 2 CPUs) while jobs went
through each case: `sbatch` (an array whose element 1 exits 1; `-c 4096`), `scancel`, `scontrol
requeue` of a running and of a finished job, a node set DOWN under a job with and without
`--no-requeue`, a drained node, `scontrol hold` and `requeuehold`. Rows that cluster cannot show
(an invalid account, QOS or constraint; a job SLURM forgot) are written in the same format, and
say so. Times are seconds of the recording, with squeue asked every 2 s as `watch` does at first.
A sequence is a list of looks: (time, squeue's row of the job, None when squeue answered without
it, or NO_ANSWER when squeue was not asked or did not answer; the job's result file when it has
appeared, else None).

What each sequence must end in is worked out from what SLURM's states and reasons mean
(squeue(1), JOB STATE CODES; slurm.schedmd.com/job_reason_codes.html) and the watcher's rules: a
result wins; a job is given up only after two squeue answers showing it ended and its grace since
the first (15 s for a result file to show up on a shared file system, 5 s after a kill, which
leaves none); a job that comes back from a final state waits again; a pending reason is refused
only when no waiting resolves it and no job of the sweep has started.
"""

from __future__ import annotations

import json
import traceback
from typing import NamedTuple

import pytest
import submitit
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from submitit.core.utils import cloudpickle_dump

from lightsuite.launch.slurm_watch import (
    NO_ANSWER,
    Outcome,
    Row,
    Unanswered,
    Watched,
    advance,
    failure,
    given_up,
    parse_squeue,
)

LOG = "/sweep/.submitit/1_0/1_0_0_log.err"
ASKED = "1 tasks x 4096 CPUs"
# what a job's result file says: a run that completed, one that failed with a user error (Hydra's
# job runner returned, job_status.json says why), one that raised outside the runner
COMPLETED = Outcome(status={"status": "completed", "objective": 0.9389})
USER_ERROR = Outcome(status={"status": "failed", "objective": None, "error": "train/loss became nan"})
CRASHED = Outcome(error="RuntimeError: CUDA error: an illegal memory access was encountered")


def idle(*times: float) -> list[tuple[float, Unanswered, None]]:
    """Looks at the result file only, squeue not asked (the watcher asks it every 2 s, then 15 s)."""
    return [(t, NO_ANSWER, None) for t in times]


class Replayed(NamedTuple):
    job: Watched
    said: list[str]  # the lines printed, without the `slurm: job 0 (<id>) ` they all begin with
    refusal: str | None
    settled_at: float | None  # when the watcher stopped waiting: a result, a refusal, or given up


def replay(steps: list, slurm_id: str, submitted_at: float = 0.0, sweep_started: bool = False) -> Replayed:
    """Feed the looks to `advance` as `watch` does, until the job is settled."""
    job = Watched(0, slurm_id, submitted_at)
    prefix = f"slurm: job 0 ({slurm_id}) "
    said: list[str] = []
    for t, line, result in steps:
        row = line if line is None or line is NO_ANSWER else parse_squeue(line)[slurm_id]
        step = advance(
            job, t, row, result, sweep_started=sweep_started, objective="val/acc_best", asked=ASKED
        )
        assert all(s.startswith(prefix) for s in step.lines), step.lines
        job, said = step.job, said + [s.removeprefix(prefix) for s in step.lines]
        if step.refusal or job.done or given_up(job, t):
            return Replayed(job, said, step.refusal, t)
    return Replayed(job, said, None, None)


# ---- a job's whole life ----------------------------------------------------------------------

# array 1, element 0: `sleep 8; exit 0`; its result file is written as its process ends
COMPLETES = [
    (1.4, "1_0|PENDING|None||0|", None),
    (3.4, "1_0|RUNNING|None|vm|0|", None),
    (5.4, "1_0|RUNNING|None|vm|0|", None),
    (9.1, "1_0|COMPLETING|None|vm|0|", None),
    (9.7, NO_ANSWER, COMPLETED),
]


def test_a_completed_job_is_settled_by_its_result_with_its_objective():
    got = replay(COMPLETES, "1_0")
    # SLURM's reason None is no reason; COMPLETING is a passing state, not worth a line
    assert got.said == ["PENDING", "RUNNING on vm", "completed, val/acc_best=0.9389"]
    assert got.job.done and got.settled_at == 9.7 and got.refusal is None
    # settled: later rows change nothing and print nothing
    later = advance(got.job, 11.1, Row("COMPLETED", "None", "vm"))
    assert later.job == got.job and later.lines == ()


def test_a_job_with_a_user_error_is_settled_by_its_result_and_says_why():
    got = replay([*COMPLETES[:-1], (9.7, "1_0|COMPLETED|None|vm|0|", USER_ERROR)], "1_0")
    assert got.said == ["PENDING", "RUNNING on vm", "failed: train/loss became nan"]
    assert got.job.done and got.settled_at == 9.7


def test_a_job_that_raised_outside_hydras_runner_is_given_up_at_once_with_its_trace():
    steps = [
        (1.4, "1_1|PENDING|None||0|", None),
        (3.4, "1_1|RUNNING|None|vm|0|", None),
        (9.1, "1_1|FAILED|NonZeroExitCode|vm|0|", CRASHED),
    ]
    got = replay(steps, "1_1")
    # nothing to wait for: no grace, no second answer; the error line is said when it is recorded
    assert got.settled_at == 9.1 and not got.job.done
    assert got.said == ["PENDING", "RUNNING on vm"]
    assert failure(got.job, {}, LOG) == f"{CRASHED.error}; its log: {LOG}"


def test_a_job_that_failed_without_a_result_gets_the_result_grace():
    # element 1 exits 1 without writing a result (a crash the job could not report)
    steps = [
        (1.4, "1_1|PENDING|None||0|", None),
        (3.4, "1_1|RUNNING|None|vm|0|", None),
        (9.1, "1_1|FAILED|NonZeroExitCode|vm|0|", None),
        (11.1, "1_1|FAILED|NonZeroExitCode|vm|0|", None),
        # FAILED is not a kill: its result may still show up for 15 s after the first answer
        *idle(12.1, 18.1, 24.0, 25.0),
    ]
    got = replay(steps, "1_1")
    assert got.said == ["PENDING", "RUNNING on vm", "FAILED"]
    assert got.settled_at == 25.0  # 15.9 s after 9.1; at 24.0 only 14.9 s had passed
    assert failure(got.job, {}, LOG) == f"SLURM job 1_1 ended FAILED without a result; its log: {LOG}"


CANCELLED = [  # job 5: `sleep 60`, scancel after 4 s
    (16.9, "5|PENDING|Priority||0|", None),
    (18.9, "5|RUNNING|None|vm|0|", None),
    (21.0, "5|CANCELLED|None|vm|0|", None),
    (23.0, "5|CANCELLED|None|vm|0|", None),
    *idle(24.0, 25.5),
    (25.9, "5|CANCELLED|None|vm|0|", None),
    *idle(26.5, 27.5),
]


def test_a_cancelled_job_is_given_up_after_two_answers_and_the_kill_grace():
    got = replay(CANCELLED, "5", submitted_at=16.4)
    assert got.said == ["PENDING (Priority)", "RUNNING on vm", "CANCELLED"]
    assert got.settled_at == 26.5  # the first look more than 5 s after 21.0
    assert got.job.ended_at == 21.0 and got.job.ended_polls == 3
    assert failure(got.job, {}, LOG) == f"SLURM job 5 ended CANCELLED without a result; its log: {LOG}"


def test_a_job_whose_node_failed_is_given_up_after_the_kill_grace():
    steps = [  # job 7 (--no-requeue): its node set DOWN while it ran
        (51.8, "7|PENDING|Priority||0|", None),
        (53.8, "7|RUNNING|None|vm|0|", None),
        (55.9, "7|NODE_FAIL|NodeDown|vm|0|", None),
        (57.9, "7|NODE_FAIL|NodeDown|vm|0|", None),
        *idle(58.9, 60.4, 61.4),
    ]
    got = replay(steps, "7", submitted_at=50.6)
    assert got.said == ["PENDING (Priority)", "RUNNING on vm", "NODE_FAIL"]
    assert got.settled_at == 61.4  # 5.5 s after 55.9; at 60.4 only 4.5 s had passed
    assert failure(got.job, {}, LOG) == f"SLURM job 7 ended NODE_FAIL without a result; its log: {LOG}"


def test_a_requeued_job_is_followed_through_its_restarts_to_its_result():
    steps = [  # job 6: `sleep 12`, `scontrol requeue` after 4 s, then its node set DOWN (requeued again)
        (16.9, "6|PENDING|Priority||0|", None),
        (18.9, "6|RUNNING|None|vm|0|", None),
        (20.9, "6|PENDING|BeginTime||1|", None),
        (22.9, "6|PENDING|BeginTime||1|", None),
        (51.8, "6|RUNNING|None|vm|1|", None),
        (55.9, "6|PENDING|BeginTime||2|", None),
        (62.9, "6|RUNNING|None|vm|2|", None),
        (74.9, "6|COMPLETED|None|vm|2|", COMPLETED),  # the result is read first
    ]
    got = replay(steps, "6", submitted_at=16.4)
    assert got.said == [
        "PENDING (Priority)",
        "RUNNING on vm",
        "requeued (restart 1)",
        "PENDING (BeginTime)",
        "RUNNING on vm",
        "requeued (restart 2)",
        "PENDING (BeginTime)",
        "RUNNING on vm",
        "completed, val/acc_best=0.9389",
    ]
    assert got.job.done and got.job.restarts == 2 and got.settled_at == 74.9


# ---- pending: what can pass is shown and waited for, what cannot is refused ------------------


def test_a_job_asking_more_than_any_node_has_is_refused_before_any_job_started():
    got = replay([(0.8, "3|PENDING|PartitionConfig||0|", None)], "3")
    assert got.said == ["PENDING (PartitionConfig)"] and got.settled_at == 0.8
    assert got.refusal.startswith("SLURM can never start job 0 (3, pending: PartitionConfig): ")
    # the fix, what the job asks, and what was done about the other jobs
    assert "hydra.launcher.cpus_per_task" in got.refusal and f"({ASKED})" in got.refusal
    assert got.refusal.endswith("the sweep's pending jobs were cancelled")


@pytest.mark.parametrize(
    ("reason", "setting"),
    [
        ("BadConstraints", "hydra.launcher.constraint"),
        ("InvalidAccount", "hydra.launcher.account"),
        ("InvalidQOS", "hydra.launcher.qos"),
    ],
)
def test_each_definite_pending_reason_is_refused_with_its_setting(reason, setting):
    # written, not recorded: without accounting any account and QOS are taken, and sbatch refuses an
    # unknown feature there
    got = replay([(0.8, f"3|PENDING|{reason}||0|", None)], "3")
    assert got.refusal is not None and f"pending: {reason}" in got.refusal and setting in got.refusal


WAITS = [  # a full node, a drained one (all ran once it was resumed), a start time not reached
    "2|PENDING|Priority||0|",
    "2|PENDING|Resources||0|",
    "9|PENDING|ReqNodeNotAvail, UnavailableNodes:vm||0|",
    "10|PENDING|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority "
    "partitions||0|",
    "14|PENDING|BeginTime||0|",
]


@pytest.mark.parametrize("line", WAITS)
def test_a_reason_that_can_pass_is_shown_and_waited_for(line):
    slurm_id = line.split("|")[0]
    reason = line.split("|")[2]
    got = replay([(1.0, line, None), *idle(2.0, 400.0)], slurm_id)
    assert got.said == [f"PENDING ({reason})"]
    assert got.refusal is None and got.settled_at is None and got.job.ended_at is None


def test_held_jobs_say_how_to_release_them():
    got = replay([(1.0, "14|PENDING|BeginTime||0|", None), (3.0, "14|PENDING|JobHeldAdmin||0|", None)], "14")
    assert got.said == ["PENDING (BeginTime)", "PENDING (JobHeldAdmin) (scontrol release it)"]
    got = replay(
        [(3.0, "15|RUNNING|None|vm|0|", None), (5.0, "15|PENDING|job requeued in held state||1|", None)], "15"
    )
    assert got.said[-1] == "PENDING (job requeued in held state) (scontrol release it)"
    assert got.refusal is None and got.settled_at is None


def test_a_definite_reason_is_waited_for_once_a_job_of_the_sweep_has_run():
    # the sweep's jobs ask the same resources: one that ran shows they can be had (a limit lowered
    # since, say), so the reason can pass again
    line = "3|PENDING|PartitionConfig||0|"
    got = replay([(0.8, line, None), *idle(1.8, 2.8)], "3", sweep_started=True)
    assert got.said == ["PENDING (PartitionConfig)"] and got.refusal is None and got.settled_at is None
    # and so once this job itself has run (briefly: seen only while completing), then was requeued
    # (written, not recorded)
    steps = [
        (1.0, "3|PENDING|None||0|", None),
        (3.0, "3|COMPLETING|None|vm|0|", None),
        (5.0, "3|PENDING|PartitionConfig||1|", None),
    ]
    got = replay(steps, "3")
    assert got.refusal is None and got.said == [
        "PENDING",
        "requeued (restart 1)",
        "PENDING (PartitionConfig)",
    ]


# ---- results late or lost, squeue quiet ------------------------------------------------------

LOST = [  # job 1_0 completed; its result file never shows up
    (1.4, "1_0|PENDING|None||0|", None),
    (3.4, "1_0|RUNNING|None|vm|0|", None),
    (9.7, "1_0|COMPLETED|None|vm|0|", None),
    (11.7, "1_0|COMPLETED|None|vm|0|", None),
    *idle(12.7, 20.0, 24.5, 25.0),
]


def test_a_completed_job_whose_result_is_lost_is_given_up_after_the_result_grace():
    got = replay(LOST, "1_0")
    assert got.said == ["PENDING", "RUNNING on vm", "COMPLETED"]
    assert got.settled_at == 25.0  # 15.3 s after 9.7; at 24.5 only 14.8 s had passed
    # its job_status.json says it completed: that record stays (the run is fine, its result file
    # lost); anything else is recorded as a failure, with the state SLURM showed
    assert failure(got.job, {"status": "completed", "objective": 0.9389}, LOG) is None
    lost = f"SLURM job 1_0 ended COMPLETED without a result; its log: {LOG}"
    assert failure(got.job, {}, LOG) == lost
    assert failure(got.job, {"status": "failed", "error": "x"}, LOG) == lost


def test_a_result_that_shows_up_late_is_taken():
    # on a shared file system the result may show up after squeue says COMPLETED; even after the
    # job was given up, a last look takes it
    late = [*LOST[:4], *idle(12.7, 20.0), (20.5, NO_ANSWER, COMPLETED)]
    got = replay(late, "1_0")
    assert got.job.done and got.settled_at == 20.5 and got.said[-1] == "completed, val/acc_best=0.9389"
    given = replay(LOST, "1_0").job
    last_look = advance(given, 40.0, result=COMPLETED, objective="val/acc_best")
    assert last_look.job.done and last_look.lines == ("slurm: job 0 (1_0) completed, val/acc_best=0.9389",)


def test_a_job_is_given_up_only_after_two_answers_even_when_squeue_falls_silent():
    # job 5 again, squeue not answering after its first CANCELLED: the grace passes, but one answer
    # could be the controller's mistake; the second, at 27.0, settles it
    silent = [*CANCELLED[:3], *idle(23.0, 25.0, 26.0, 26.9), (27.0, "5|CANCELLED|None|vm|0|", None)]
    got = replay(silent, "5", submitted_at=16.4)
    assert got.said == ["PENDING (Priority)", "RUNNING on vm", "CANCELLED"]
    assert got.settled_at == 27.0 and got.job.ended_at == 21.0


def test_a_job_not_listed_yet_is_waited_for_and_one_gone_is_given_up():
    # just submitted, squeue may not list it yet: for up to 5 minutes that is no news
    got = replay([(0.5, None, None), (2.5, None, None), (299.0, None, None)], "20")
    assert got.said == [] and got.job.state == "SUBMITTED" and got.settled_at is None
    # a job that was listed and is not any more (forgotten by SLURM after MinJobAge, 10 minutes on
    # the one-node cluster: written, not recorded) ends like one that failed
    steps = [(1.0, "20|RUNNING|None|vm|0|", None), (3.0, None, None), (5.0, None, None), *idle(17.5, 18.5)]
    got = replay(steps, "20")
    assert got.said == ["RUNNING on vm", "is not listed by squeue (any more)"]
    assert got.settled_at == 18.5
    assert failure(got.job, {}, LOG) == f"SLURM job 20 ended GONE without a result; its log: {LOG}"
    late = replay([(301.0, None, None), (303.0, None, None), *idle(316.5)], "20")
    assert late.said == ["is not listed by squeue (any more)"] and late.settled_at == 316.5


# ---- coming back from a final state ----------------------------------------------------------


def test_a_job_requeued_after_a_final_state_waits_again_from_its_new_end():
    # 1_1 FAILED, seen twice, then `scontrol requeue` of the finished job: it runs and fails again
    steps = [
        (9.1, "1_1|FAILED|NonZeroExitCode|vm|0|", None),
        (11.1, "1_1|FAILED|NonZeroExitCode|vm|0|", None),
        (13.1, "1_1|PENDING|NonZeroExitCode||1|", None),
        (15.1, "1_1|RUNNING|None|vm|1|", None),
        (30.0, "1_1|FAILED|NonZeroExitCode|vm|1|", None),
        (32.0, "1_1|FAILED|NonZeroExitCode|vm|1|", None),
        *idle(33.0, 44.9, 45.5),
    ]
    got = replay(steps, "1_1")
    assert got.said == [
        "FAILED",
        "requeued (restart 1)",
        "PENDING (NonZeroExitCode)",
        "RUNNING on vm",
        "FAILED",
    ]
    assert got.settled_at == 45.5  # 15 s after its second end, not after its first
    assert got.job.ended_at == 30.0


def test_a_job_back_from_a_final_state_needs_two_new_answers():
    steps = [  # job 5, CANCELLED once, then `scontrol requeue` of the cancelled job
        (21.0, "5|CANCELLED|None|vm|0|", None),
        (23.0, "5|PENDING|None||1|", None),
        (25.0, "5|RUNNING|None|vm|1|", None),
        (40.0, "5|CANCELLED|None|vm|1|", None),
        *idle(46.0, 50.0),  # past the grace, but one answer since it came back
        (52.0, "5|CANCELLED|None|vm|1|", None),
    ]
    got = replay(steps, "5", submitted_at=16.4)
    assert got.said == ["CANCELLED", "requeued (restart 1)", "PENDING", "RUNNING on vm", "CANCELLED"]
    assert got.settled_at == 52.0 and got.job.ended_polls == 2


# ---- squeue's output, and what submitit writes -----------------------------------------------


def test_squeue_rows_are_read_by_job_id_with_reasons_as_printed():
    # rows of the recording, as squeue printed them (with --array, each element on its own line)
    stdout = (
        "11_0|PENDING|ReqNodeNotAvail, UnavailableNodes:vm||0|\n"
        "6|RUNNING|None|vm|2|\n"
        "7|NODE_FAIL|NodeDown|vm|0|\n"
        "10|PENDING|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority "
        "partitions||0|\n"
    )
    assert parse_squeue(stdout) == {
        "11_0": Row("PENDING", "ReqNodeNotAvail, UnavailableNodes:vm", "", 0),
        "6": Row("RUNNING", "None", "vm", 2),
        "7": Row("NODE_FAIL", "NodeDown", "vm", 0),
        "10": Row(
            "PENDING",
            "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions",
            "",
            0,
        ),
    }
    # with a width (`State:10|`) squeue pads each field (and cuts longer ones: SQUEUE_FORMAT gives none)
    assert parse_squeue("1_0       |RUNNING   |None      |vm        |3         |") == {
        "1_0": Row("RUNNING", "None", "vm", 3)
    }


def test_the_watcher_reads_what_a_job_left_in_its_submitit_folder(tmp_path, capsys):
    """`watch` over real submitit handles: a result and its job_status.json, and a job's trace."""
    from lightsuite.launch.slurm_submit import SweepJob, watch

    run_dir = tmp_path / "0"
    run_dir.mkdir()
    (run_dir / "job_status.json").write_text(json.dumps(COMPLETED.status))
    ret = JobReturn(
        overrides=["seed=1"], hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
    )
    ret.status, ret.return_value = JobStatus.COMPLETED, 0.9389
    try:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    except RuntimeError:
        trace = traceback.format_exc()
    jobs = []
    for number, outcome in enumerate([("success", ret), ("error", trace)]):
        handle = submitit.SlurmJob(tmp_path / ".submitit" / f"1_{number}", f"1_{number}")
        handle.paths.folder.mkdir(parents=True)
        cloudpickle_dump(outcome, handle.paths.result_pickle)  # what submitit's job side writes
        jobs.append(SweepJob(number, [f"seed={number + 1}"], handle))
    watch(jobs, {}, "val/acc_best", poll_s=0.01)  # both settled at the first look: no squeue asked
    assert capsys.readouterr().out == "slurm: job 0 (1_0) completed, val/acc_best=0.9389\n"
    assert jobs[0].result.return_value == 0.9389 and jobs[1].result is None
    assert jobs[1].seen.error == "RuntimeError: CUDA error: an illegal memory access was encountered"


def test_a_definite_reason_is_refused_unless_another_job_of_the_sweep_has_run(tmp_path, capsys):
    """`watch`'s squeue step over real submitit handles: the sweep's other jobs count."""
    from lightsuite.launch.slurm_submit import SweepJob, _observe

    jobs = [SweepJob(n, [f"seed={n}"], submitit.SlurmJob(tmp_path, f"3_{n}")) for n in (0, 1)]
    pending = {job.slurm_id: Row("PENDING", "PartitionConfig") for job in jobs}
    job, refusal = _observe(jobs, jobs, pending, 1.0, ASKED)
    assert job is jobs[0] and refusal.startswith(
        "SLURM can never start job 0 (3_0, pending: PartitionConfig)"
    )
    assert capsys.readouterr().out == "slurm: job 0 (3_0) PENDING (PartitionConfig)\n"
    # job 1 ran meanwhile (then was requeued): the same reason is waited for, for both jobs
    jobs[1].seen = advance(jobs[1].seen, 2.0, Row("RUNNING", "None", "vm")).job
    assert _observe(jobs, jobs, pending, 3.0, ASKED) is None
    assert [job.seen.state for job in jobs] == ["PENDING", "PENDING"]

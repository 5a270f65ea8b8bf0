"""The suite's Optuna sweeper: search spaces, settings, persistent and resumed studies, pruning,
parallel trials and failures, with real Optuna studies and real searches on digits."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import FAST, FEW_EPOCHS, ONE_TINY_EPOCH, run_cli
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lightsuite.errors import ConfigError
from lightsuite.launch.optuna_settings import read_settings
from lightsuite.launch.optuna_space import parse_space, spell

HERE = Path(__file__).parent
TINY = [*FAST, *ONE_TINY_EPOCH]
ENV = {"OMP_NUM_THREADS": "1"}
# a few epochs of a few batches: long enough for the pruner to have something to compare
EPOCHS = [*FAST, *FEW_EPOCHS]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(sweep: Path, name: str) -> optuna.Study:
    from lightsuite.launch.optuna_trial import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(sweep / "optuna.journal")))


# -- the search space ---------------------------------------------------------------------------


def test_hydra_sweep_values_become_optuna_distributions():
    space = parse_space(
        {
            "task.optimizer.lr": "tag(log, interval(0.005, 0.5))",
            "model.width": "int(interval(1, 4))",
            "model.hidden": "range(16, 65, 16)",
            "data.augment": "choice(true, false)",
            "trainer.max_epochs": 3,
        },
        arguments=["seed=7", "model.depth=choice(2, 3)", "model.width=2"],
    )
    dists = {p.key: p.distribution for p in space.params}
    assert dists["task.optimizer.lr"] == FloatDistribution(0.005, 0.5, log=True)
    # Hydra's range stops before its end, Optuna's includes its high end: 16, 32, 48, 64
    assert dists["model.hidden"] == IntDistribution(16, 64, step=16)
    assert dists["data.augment"] == CategoricalDistribution([True, False])
    # a sweep on the command line is searched too; plain values are passed as they are
    assert dists["model.depth"] == CategoricalDistribution([2, 3])
    # a plain value on the command line takes its key out of the search
    assert "model.width" not in dists
    assert space.fixed == ["trainer.max_epochs=3", "seed=7", "model.width=2"]
    assert parse_space({"model.width": "int(interval(1, 4))"}).params[0].distribution == IntDistribution(1, 4)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = space.sample(trial)
    lr = float(next(o for o in overrides if o.startswith("task.optimizer.lr=")).split("=")[1])
    assert lr == trial.params["task.optimizer.lr"] and 0.005 <= lr <= 0.5
    assert f"model.hidden={trial.params['model.hidden']}" in overrides


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": "interval(1, 0.5)"}, "hydra.sweeper.params.a: interval(1.0, 0.5) is empty"),
        ({"a": "tag(log, interval(0, 1))"}, "needs a low end above 0"),
        ({"a": "tag(lgo, interval(1, 2))"}, "unknown tag lgo"),
        ({"a": "range(5, 1)"}, "holds no value"),
        ({"a": "choice([1, 2], [3])"}, "use a config group"),
        ({"a": "interval(1,"}, "cannot parse"),
    ],
)
def test_a_bad_search_value_is_refused_with_its_key(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_space(params)


def test_conditional_parameters_exist_only_for_their_choice():
    space = parse_space(
        {"task/optimizer": "choice(sgd, adamw)"},
        {
            "task/optimizer": {
                "sgd": {
                    "task.optimizer.lr": "tag(log, interval(0.01, 0.5))",
                    "task.optimizer.momentum": "interval(0.5, 0.99)",
                },
                "adamw": {"task.optimizer.lr": "tag(log, interval(1e-4, 1e-2))"},
            }
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        overrides = dict(o.split("=", 1) for o in space.sample(trial))
        study.tell(trial, 0.0)
        seen.add(overrides["task/optimizer"])
        lr = float(overrides["task.optimizer.lr"])
        if overrides["task/optimizer"] == "sgd":
            assert 0.01 <= lr <= 0.5 and 0.5 <= float(overrides["task.optimizer.momentum"]) <= 0.99
        else:
            assert 1e-4 <= lr <= 1e-2 and "task.optimizer.momentum" not in overrides
    assert seen == {"sgd", "adamw"}
    # each branch's learning rate has its own name in the study: the sampler never mixes the ranges
    names = {name for t in study.trials for name in t.params}
    assert {"task.optimizer.lr[task/optimizer=sgd]", "task.optimizer.lr[task/optimizer=adamw]"} <= names
    # the preflight composes every branch, the momentum at its high end included
    assert any("task.optimizer.momentum=0.99" in probe for probe in space.probes())

    with pytest.raises(ConfigError, match="rmsprop is not one of task/optimizer's choices"):
        parse_space(
            {"task/optimizer": "choice(sgd, adamw)"}, {"task/optimizer": {"rmsprop": {"x": "interval(0, 1)"}}}
        )
    with pytest.raises(ConfigError, match="is not a choice"):
        parse_space({"a": "interval(0, 1)"}, {"a": {"x": {"b": "interval(0, 1)"}}})


@pytest.mark.parametrize(
    "value",
    [0.1, 1e-06, 0.012345678901234567, 3, True, None, "sgd", "it's odd", "2024_12", "1e5", "true", "null"],
)
def test_a_sampled_value_is_spelled_so_hydra_reads_it_back(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(f"k={spell(value)}").value() == value


def _settings(**changes):
    base = OmegaConf.load(HERE.parents[1] / "conf" / "hydra" / "sweeper" / "optuna.yaml")
    base.sampler.seed = 0
    return read_settings(OmegaConf.merge(base, changes), "search")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_trials": "abc"}, "hydra.sweeper.n_trials=abc must be an integer at least 1"),
        ({"n_jobs": 0}, "hydra.sweeper.n_jobs=0 must be an integer at least 1"),
        ({"max_failure_rate": 2}, r"max_failure_rate=2 must be a number in \[0, 1\]"),
        ({"direction": "up"}, "direction=up must be maximize or minimize"),
        ({"n_trail": 5}, "hydra.sweeper.n_trail is not a setting of the Optuna sweeper"),
        ({"sampler": "tpe"}, "sampler must be a config with _target_"),
    ],
)
def test_a_wrong_setting_is_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        _settings(**changes)
    assert _settings().study_name == "search" and _settings().n_trials == 20


def test_a_wrong_setting_on_the_command_line_is_one_line(tmp_path):
    proc = run_cli(
        "lightsuite.train",
        "hparams_search=digits_resnet",
        "hydra.sweeper.n_trials=abc",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: hydra.sweeper.n_trials=abc must be an integer at least 1"
    assert not list(tmp_path.glob("outputs/search/*/0"))


def test_an_unknown_key_in_the_search_space_is_refused_before_the_first_trial(multirun, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit:
        # a sweep value on the command line is searched (Hydra takes none for hydra.sweeper.params.*)
        multirun(
            "hparams_search=digits_resnet", "task.optimizer.lrr=interval(0.1, 1)", f"hydra.sweep.dir={sweep}"
        )
    assert exit.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the search space cannot run") and "task.optimizer.lrr" in line
    assert line.endswith("no trial was started")
    assert not (sweep / "0").exists() and not (sweep / "optuna.journal").exists()


# -- real searches ------------------------------------------------------------------------------


def _statuses(sweep: Path) -> list[str]:
    return [job["status"] for job in json.loads((sweep / "sweep_summary.json").read_text())["jobs"]]


@pytest.mark.slow
def test_hopeless_trials_are_pruned_early_and_say_so(multirun, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    multirun("hparams_search=hopeless", *EPOCHS, f"hydra.sweep.dir={sweep}")
    out = capsys.readouterr().out
    study = _study(sweep, "hopeless")
    states = [t.state for t in study.trials]
    assert states[:2] == [TrialState.COMPLETE] * 2
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.params for t in study.trials]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["pruned"] == len(pruned) and summary["failed"] == 0
    for trial in pruned:
        assert trial.params["task.optimizer.lr"] < 1e-5
        # pruned before its last epoch (0..3), at the step it last reported
        assert max(trial.intermediate_values) < 3
        run_dir = sweep / str(trial.number)
        record = json.loads((run_dir / "job_status.json").read_text())
        assert record["status"] == "pruned" and record["pruned_at_epoch"] == max(trial.intermediate_values)
        assert record["params"] == {"task.optimizer.lr": trial.params["task.optimizer.lr"]}
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert "val/acc_best" in metrics and not any(k.startswith("test/") for k in metrics), metrics
        # it stopped training there: the epoch it was pruned after is the last one it logged
        with (run_dir / "csv" / "metrics.csv").open() as f:
            logged = {int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")}
        assert max(logged) == record["pruned_at_epoch"], logged
        assert f"run dir: {run_dir}" in out and f"pruned after {record['pruned_at_epoch'] + 1} epochs" in out
    # a completed trial reported every epoch and was tested
    done = study.trials[0]
    assert sorted(done.intermediate_values) == [0, 1, 2, 3]
    assert "test/acc" in json.loads((sweep / "0" / "metrics.json").read_text())
    assert summary["best"]["job"] in (0, 1)


def _search(sweep: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lightsuite.train",
        "hparams_search=digits_resnet",
        "hydra.sweeper.n_trials=6",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


@pytest.mark.slow
def test_a_search_killed_after_three_trials_continues_to_six_with_the_first_three_unchanged(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "LIGHTSUITE_ROOT": str(tmp_path), **ENV}
    proc = subprocess.Popen(
        _search(sweep), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (sweep / "3" / "config.yaml").exists():  # trial 3 has started: 0, 1, 2 are told
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _study(sweep, "digits_resnet")
    before = [(t.number, t.state, t.params, t.value) for t in first.trials[:3]]
    assert [state for _, state, _, _ in before] == [TrialState.COMPLETE] * 3
    assert first.trials[3].state == TrialState.RUNNING
    stamps = {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in range(3)}

    again = subprocess.run(_search(sweep), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing with 4 trials held, 1 interrupted trial(s) run again" in again.stdout
    study = _study(sweep, "digits_resnet")
    assert len(study.trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert [(t.number, t.state, t.params, t.value) for t in study.trials[:3]] == before
    assert {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in range(3)} == stamps
    # the interrupted trial ran again with its own values, in its own run dir
    assert study.trials[3].params == first.trials[3].params
    assert _statuses(sweep) == ["completed"] * 6
    # a resumed sampler does not draw the first trials' values again (all 6 are TPE's random
    # start-up trials, whose generator a plain restart would seed as it did for trial 0)
    assert len({t.params["task.optimizer.lr"] for t in study.trials}) == 6
    # another search's overrides in the same study are refused, not mixed in
    other = subprocess.run(
        _search(sweep, "task.label_smoothing=0.1"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert other.returncode == 1
    assert "give the same overrides to continue it, or a new hydra.sweeper.study_name" in other.stderr


def _interval(run_dir: Path) -> tuple[float, float]:
    """When a job ran: its config written at the start, its status at the end."""
    return (run_dir / "config.yaml").stat().st_mtime, (run_dir / "job_status.json").stat().st_mtime


@pytest.mark.slow
def test_n_jobs_trials_run_at_once_through_the_local_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "hparams_search=digits_resnet",
        "hydra/launcher=local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _statuses(sweep) == ["completed"] * 2
    (a0, b0), (a1, b1) = _interval(sweep / "0"), _interval(sweep / "1")
    assert a0 < b1 and a1 < b0, "trials 0 and 1 did not run at the same time"
    # each in its own submitit process
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 2
    assert len(_study(sweep, "digits_resnet").trials) == 2


@pytest.mark.slow
def test_failed_trials_are_told_failed_and_too_many_end_the_search_with_one_line(multirun, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exit:
        multirun(
            "hparams_search=digits_resnet",
            # the command line's values replace the preset's: an lr that always diverges, a fixed decay
            "task.optimizer.lr=choice(1e30)",
            "task.optimizer.weight_decay=0.0",
            "hydra.sweeper.n_trials=8",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        )
    assert exit.value.code == 1
    # judged from the 4th finished trial on: 4 of 4 failed is more than the default 0.5
    study = _study(sweep, "digits_resnet")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 4
    assert "train/loss became" in study.trials[0].user_attrs["error"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: 4 of the 4 trials this search finished failed, more than hydra.sweeper.max_failure_rate=0.5: "
        f"the search stops; each failure's reason is in {sweep / 'sweep_summary.json'}"
    )
    assert _statuses(sweep) == ["failed"] * 4


PRESETS = sorted(p.stem for p in (HERE.parents[1] / "conf" / "hparams_search").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_search_preset_runs_a_trial_that_trains_its_own_values(preset, multirun, tmp_path):
    # digits_optimizers: both its enqueued baselines, one per branch of its conditional space
    trials = 2 if preset == "digits_optimizers" else 1
    fast = ["task.baselines=[]"] if preset == "sunspots_lstm" else []  # ARIMA and ETS: not searched
    multirun(f"hparams_search={preset}", f"hydra.sweeper.n_trials={trials}", *TINY, *fast)
    sweep = tmp_path / "outputs" / "search" / preset
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["completed"] * trials, summary
    assert summary["study"] == {"name": preset, "storage": str(sweep / "optuna.journal")}
    optimizers = []
    for job in summary["jobs"]:
        config = OmegaConf.load(Path(job["run_dir"]) / "config.yaml")
        assert job["params"], job
        for key, value in job["params"].items():
            if "/" in key:  # a config group's choice: the optimizer it builds
                optimizers.append(OmegaConf.select(config, key.replace("/", ".") + "._target_"))
                assert optimizers[-1].lower().endswith(value), job
            else:
                assert OmegaConf.select(config, key) == value, (key, job)
    assert len(_study(sweep, preset).trials) == trials
    if preset == "digits_optimizers":  # its two enqueued baselines ran first, one per branch
        assert optimizers == ["torch.optim.SGD", "torch.optim.AdamW"]
        assert [job["params"]["task.optimizer.lr"] for job in summary["jobs"]] == [0.1, 1e-3]


def test_sqlite_and_journal_storages_hold_a_study_across_openings(tmp_path):
    """SQLite works with SQLAlchemy 2 (Optuna 2.10's did not); a journal file is the default."""
    from lightsuite.launch.optuna_trial import open_storage, storage_url

    assert storage_url(None, tmp_path) == str(tmp_path / "optuna.journal")
    assert storage_url(f"sqlite:///{tmp_path}/s.db", tmp_path) == f"sqlite:///{tmp_path}/s.db"
    for url in (storage_url(None, tmp_path), f"sqlite:///{tmp_path}/s.db"):
        study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
        trial = study.ask()
        trial.report(0.5, 0)
        study.tell(trial, 0.75)
        again = optuna.load_study(study_name="s", storage=open_storage(url))
        assert [(t.value, t.intermediate_values) for t in again.trials] == [(0.75, {0: 0.5})]
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.storage=nope://x cannot be opened"):
        open_storage("nope://x")


def test_a_search_with_nothing_to_search_is_refused(multirun, capsys):
    with pytest.raises(SystemExit) as exit:
        multirun("-m", "hydra/sweeper=optuna")
    assert exit.value.code == 1
    assert capsys.readouterr().err.strip().startswith("error: an Optuna search with nothing to search")


@pytest.mark.parametrize(
    ("failed", "finished", "stops"), [(3, 3, False), (2, 4, False), (3, 4, True), (4, 4, True)]
)
def test_the_failure_rate_is_judged_from_the_fourth_finished_trial(failed, finished, stops):
    from lightsuite.launch.optuna_study import failure_verdict

    assert failure_verdict(failed, finished, 0.5) is stops

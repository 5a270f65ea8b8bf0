"""`hydra/sweeper=optuna`: a search that can be left running, killed, resumed, pruned and parallel.

The sweeper asks the study for a trial, turns its values into a job's overrides
(`optuna_space`), checks and launches the job through whichever Hydra launcher is configured, and
tells the study how it ended. The study lives in a storage (by default a journal file in the sweep
dir), so:

- the same command again continues the study: finished trials are kept, `n_trials` counts every
  trial the study holds, and a trial a killed search left running is run again in its own run dir
  (where it resumes from its last checkpoint) unless its job had already finished;
- each job reports its objective every epoch through the storage (`optuna_trial`) and is pruned
  there; the sweeper tells the study it was pruned;
- with a launcher that runs jobs in their own processes (`hydra/launcher=local`, `slurm`), up to
  `n_jobs` trials are in flight and a new one is asked for as each slot frees;
- a failed trial (a crash, a diverged loss, a NaN) is told as failed and the search goes on, until
  more than `max_failure_rate` of the finished trials have failed.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf

from lightsuite.errors import ConfigError, LightsuiteError, exit_on_user_error, user_error
from lightsuite.io import write_text
from lightsuite.launch.optuna_jobs import settled_record, still_running
from lightsuite.launch.optuna_settings import read_settings
from lightsuite.launch.optuna_space import SearchSpace, parse_space, spell
from lightsuite.launch.optuna_study import enqueue, failure_verdict, open_study
from lightsuite.launch.optuna_trial import pruned_after, storage_url
from lightsuite.launch.sweeps import read_job_status, record_job_status, write_summary

RESULTS = "optimization_results.yaml"


def search(sweeper: Any, arguments: list[str]) -> list[JobReturn]:
    """The sweeper's `sweep`: user errors end it with one line and exit status 1."""
    with exit_on_user_error():
        return Search(sweeper, arguments).run()


class Search:
    """One run of the sweeper over its study (see the module's docstring)."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        self.sweeper = sweeper
        self.config: DictConfig = sweeper.config
        self.launcher = sweeper.launcher
        choices = self.config.hydra.runtime.choices
        self.settings = read_settings(self.config.hydra.sweeper, choices.get("hparams_search") or "search")
        self.space: SearchSpace = parse_space(self.settings.params, self.settings.conditional, arguments)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        self.url = storage_url(self.settings.storage, self.sweep_dir)
        self.objective = self.config.get("optimized_metric")
        self.config_name = self.config.hydra.job.config_name
        self.returns: list[JobReturn] = []
        self.finished: list[str] = []  # how each trial this run settled ended
        self.failed_to_end: str | None = None
        if not self.space.params:
            raise ConfigError(
                "an Optuna search with nothing to search: give hydra.sweeper.params (or a preset: "
                "hparams_search=digits_resnet) or a sweep value, e.g. 'task.optimizer.lr=interval(0.01, 0.5)'"
            )
        if self.config.get("dry_run"):
            raise ConfigError(
                "dry_run=true checks one run and trains nothing, so an Optuna search would have nothing to "
                "optimize: drop dry_run (the search checks its space before its first trial)"
            )
        if not self.objective:
            raise ConfigError(
                "an Optuna search needs optimized_metric (the metric it optimizes, e.g. val/acc_best)"
            )

    # -- the study ------------------------------------------------------------------------------
    def open_study(self) -> Any:
        self.storage, self.study = open_study(self.settings, self.space, self.url, self.objective)
        return self.study

    # -- one job ----------------------------------------------------------------------------------
    def run_dir(self, number: int, overrides: list[str]) -> Path:
        from lightsuite.launch.sweeps import job_dir

        return job_dir(self.sweeper.hydra_context.config_loader, self.config, overrides, number)

    def job_overrides(self, number: int, overrides: list[str]) -> list[str]:
        """A trial's overrides, and the three that tell its job which trial of which study it is."""
        return [
            *overrides,
            f"hydra.sweeper.storage={spell(self.url)}",
            f"hydra.sweeper.study_name={spell(self.settings.study_name)}",
            f"hydra.sweeper.trial={number}",
        ]

    def check(self, overrides: list[str]) -> str | None:
        """Compose and build a trial's job before it starts: why it cannot run, or None."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from lightsuite.launch.preflight import check_job

        try:
            check_job(self.config_name, overrides)
        except (HydraException, OmegaConfBaseException, LightsuiteError) as exc:
            err = user_error(exc) or exc
            return " ".join(str(err).split("Config search path")[0].split())
        except Exception as exc:  # a trial that cannot even be built is a failed trial, not a crash
            return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0]
        return None

    def preflight(self) -> None:
        """Every parameter at its ends (each choice, each branch) composed and built: an unknown key
        or a value the config refuses ends the search before its first trial. On SLURM, a search
        over the resources its jobs ask for is refused as a sweep over them is."""
        if type(self.launcher).__name__ == "SlurmLauncher":
            from lightsuite.launch.slurm_submit import check_sweep

            check_sweep(self.launcher.params, self.space.probes())
        for probe in self.space.probes():
            problem = self.check(probe)
            if problem is not None:
                raise ConfigError(
                    f"the search space cannot run ({' '.join(probe)}): {problem}; no trial was started"
                )

    def settle(self, number: int, overrides: list[str], ret: JobReturn | BaseException | None) -> None:
        """Tell the study how the job ended, from its `job_status.json` (written by the job)."""
        from optuna.trial import TrialState

        run_dir = self.run_dir(number, overrides)
        trial = self.storage.get_trial(self._trial_id(number))
        record = settled_record(run_dir, number, overrides, ret, trial, self.objective)
        names = self.space.names()
        record["trial"] = number
        record["params"] = {names.get(name, name): value for name, value in trial.params.items()}
        record_job_status(run_dir, record)
        objective = record.get("objective")
        if record["status"] == "pruned":
            self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        elif record["status"] == "completed":
            self.study.tell(number, objective, skip_if_finished=True)
        else:
            self.storage.set_trial_user_attr(self._trial_id(number), "error", str(record.get("error")))
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self.finished.append(record["status"])
        self.write_summary()
        self._progress(number, record)

    def _trial_id(self, number: int) -> int:
        study_id = self.storage.get_study_id_from_name(self.settings.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def write_summary(self) -> None:
        study = {"name": self.settings.study_name, "storage": self.url}
        write_summary(self.sweep_dir, self.objective, self.settings.direction, study=study)

    def counts(self) -> dict[str, int]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}

    def _progress(self, number: int, record: dict) -> None:
        counts = self.counts()
        done = counts["complete"] + counts["pruned"] + counts["fail"]
        state = record["status"]
        if state == "completed":
            state += f" ({self.objective}={record['objective']:.4g})"
        elif state == "failed":
            state += f": {record.get('error')}"
        elif state == "pruned" and record.get("pruned_at_epoch") is not None:
            state = pruned_after(record["pruned_at_epoch"])
        best = ""
        with contextlib.suppress(ValueError):
            best = f"; best {self.study.best_value:.4g} (trial {self.study.best_trial.number})"
        print(f"optuna: trial {number} {state}; {done} of {self.settings.n_trials} trials{best}", flush=True)

    def too_many_failures(self) -> bool:
        """Judged on this run's trials: a study's old failures (a bug since fixed) do not end it."""
        failed, done = self.finished.count("failed"), len(self.finished)
        if not failure_verdict(failed, done, self.settings.max_failure_rate):
            return False
        self.failed_to_end = (
            f"{failed} of the {done} trials this search finished failed, more than "
            f"hydra.sweeper.max_failure_rate={self.settings.max_failure_rate:g}: the search stops; "
            f"each failure's reason is in {self.sweep_dir / 'sweep_summary.json'}"
        )
        return True

    # -- the search -------------------------------------------------------------------------------
    def resumed(self) -> list[tuple[int, list[str]]]:
        """Trials a killed search left running: settled from their job's status when it finished,
        otherwise run again (in their own run dir, where they resume from their last checkpoint)."""
        from optuna.trial import TrialState

        again = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = trial.user_attrs
            if "overrides" not in attrs:  # killed between asking and launching: it never ran
                self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                continue
            overrides = list(attrs["overrides"])
            running = still_running(attrs.get("job"))
            if running is not None:
                raise ConfigError(
                    f"trial {trial.number} of study {self.settings.study_name} still runs, as {running}: "
                    "stop it (or let it finish) before running the search again"
                )
            ended = read_job_status(self.run_dir(trial.number, overrides), trial.number) is not None
            if ended or "pruned_at_epoch" in attrs:
                self.settle(trial.number, overrides, None)
            else:
                again.append((trial.number, overrides))
        self.finished.clear()  # what a killed search left is not this run's verdict
        return again

    def held(self) -> int:
        """Trials the study holds, queued ones (not yet asked for) aside: what `n_trials` counts."""
        from optuna.trial import TrialState

        return sum(t.state != TrialState.WAITING for t in self.study.get_trials(deepcopy=False))

    def ask(self) -> tuple[int, list[str]] | None:
        if self.held() >= self.settings.n_trials:
            return None
        trial = self.study.ask()
        overrides = self.space.sample(trial)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_dir", str(self.run_dir(trial.number, overrides)))
        return trial.number, overrides

    def launch(self, number: int, overrides: list[str]) -> JobReturn:
        (ret,) = self.launcher.launch([self.job_overrides(number, overrides)], initial_job_idx=number)
        return ret

    def run(self) -> list[JobReturn]:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        self.preflight()
        self.open_study()
        enqueue(self.study, self.settings, self.space)
        self.write_summary()
        again = self.resumed()
        held = self.held()
        print(
            f"optuna: study {self.settings.study_name} in {self.url}: "
            + (f"continuing with {held} trials held" if held else "new")
            + (f", {len(again)} interrupted trial(s) run again" if again else "")
            + f"; {self.settings.n_trials} trials in all, {self.settings.direction} {self.objective}",
            flush=True,
        )
        in_process = isinstance(self.launcher, BasicLauncher)
        if in_process and self.settings.n_jobs > 1:
            print(
                f"optuna: hydra.sweeper.n_jobs={self.settings.n_jobs}, but the basic launcher runs jobs one "
                "after another in this process; hydra/launcher=local or slurm runs them at once",
                flush=True,
            )
        slots = 1 if in_process else self.settings.n_jobs
        done: queue.Queue = queue.Queue()
        in_flight: dict[int, list[str]] = {}
        stopping = False
        while True:
            while len(in_flight) < slots and not stopping:
                nxt = again.pop(0) if again else self.ask()
                if nxt is None:
                    break
                number, overrides = nxt
                problem = self.check(overrides)
                if problem is not None:
                    self._refused(number, overrides, problem)
                    stopping = self.too_many_failures()
                    continue
                in_flight[number] = overrides
                if in_process:
                    self._launch_into(done, number, overrides)
                else:
                    args = (done, number, overrides)
                    threading.Thread(target=self._launch_into, args=args, daemon=True).start()
            if not in_flight:
                break
            try:
                number, result = _next(done)
            except KeyboardInterrupt:
                self._interrupted(in_flight, in_process)
                raise
            if isinstance(result, (SystemExit, KeyboardInterrupt)):
                raise result
            if isinstance(result, JobReturn):
                self.returns.append(result)
            self.settle(number, in_flight.pop(number), result)
            stopping = stopping or self.too_many_failures()
        self.finish()
        return self.returns

    def _interrupted(self, in_flight: dict[int, list[str]], in_process: bool) -> None:
        """Ctrl-C: which trials were in flight, and that the same command continues the study."""
        if not in_process:
            trials = ", ".join(str(n) for n in sorted(in_flight))
            print(
                f"optuna: stopped; trial(s) {trials} were running and their jobs go on (squeue, or ps on "
                f"this machine); once they end, the same command continues study {self.settings.study_name}",
                file=sys.stderr,
                flush=True,
            )

    def _launch_into(self, done: queue.Queue, number: int, overrides: list[str]) -> None:
        """Launch one trial's job; its JobReturn, or what it raised, goes to `done` (the main thread)."""
        try:
            done.put((number, self.launch(number, overrides)))
        except BaseException as exc:  # the main thread re-raises an exit or an interrupt
            done.put((number, exc))

    def _refused(self, number: int, overrides: list[str], problem: str) -> None:
        run_dir = self.run_dir(number, overrides)
        print(
            f"error: trial {number} ({' '.join(overrides)}) cannot run: {problem}",
            file=sys.stderr,
            flush=True,
        )
        record = {"job": number, "overrides": overrides, "status": "failed", "objective": None}
        record_job_status(run_dir, {**record, "run_dir": str(run_dir), "error": problem})
        self.settle(number, overrides, None)

    def finish(self) -> None:
        """The study's best trial in `optimization_results.yaml`, and the line that ends the search."""
        counts = self.counts()
        results: dict[str, Any] = {"name": self.settings.study_name, "storage": self.url}
        results["trials"] = {k: v for k, v in counts.items() if v}
        best = next(iter(self.study.best_trials), None)
        if best is not None:
            names = self.space.names()
            results["best_trial"] = best.number
            results["best_value"] = float(best.value)
            results["best_params"] = {names.get(k, k): v for k, v in best.params.items()}
        write_text(self.sweep_dir / RESULTS, OmegaConf.to_yaml(OmegaConf.create(results)))
        self.write_summary()
        if self.failed_to_end:
            raise ConfigError(self.failed_to_end)
        shown = (
            f"best {self.objective}={best.value:.4g} (trial {best.number})" if best else "no trial completed"
        )
        print(f"optuna: {shown}; results in {self.sweep_dir / RESULTS}", flush=True)


def _next(done: queue.Queue) -> tuple[int, Any]:
    """The next finished job; waiting in short steps so that Ctrl-C reaches the main thread."""
    while True:
        with contextlib.suppress(queue.Empty):
            return done.get(timeout=0.5)

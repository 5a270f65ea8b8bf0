"""The study of an Optuna search: opened (new or continued), checked to be this search's, its
baseline trials queued, and the verdict on its failures.

A study is continued only by the search that made it: the same direction, objective, fixed
overrides and search space. Anything else would mix two searches' trials in one study (and Optuna
refuses a parameter whose range changed only when it is sampled, with a traceback).
"""

from __future__ import annotations

from typing import Any

from lightsuite.errors import ConfigError
from lightsuite.launch.optuna_settings import Settings
from lightsuite.launch.optuna_space import SearchSpace, spell
from lightsuite.launch.optuna_trial import make_pruner, open_storage

# the failure rate is judged from this many finished trials on: one early divergence is no verdict
JUDGED_FROM = 4


def open_study(settings: Settings, space: SearchSpace, url: str, objective: str) -> tuple[Any, Any]:
    """The storage and the study: created, or continued when this search made it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    try:
        held = storage.get_all_trials(storage.get_study_id_from_name(settings.study_name))
    except KeyError:
        held = []
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        sampler=make_sampler(settings, len(held)),
        pruner=make_pruner(settings.pruner),
        direction=settings.direction,
        load_if_exists=True,
    )
    if held:
        check_same_search(study, settings, space, url, objective)
    else:
        study.set_user_attr("fixed_overrides", space.fixed)
        study.set_user_attr("objective", objective)
        study.set_user_attr("space", space_record(space))
    return storage, study


def make_sampler(settings: Settings, held: int) -> Any:
    """The configured sampler. A resumed study's is seeded past the trials it holds, so it does not
    draw the first trials' values again; TPE with trials in flight at once gets `constant_liar`
    (unless set), so that concurrent trials are not drawn at the same point."""
    from hydra.utils import instantiate

    spec = dict(settings.sampler or {"_target_": "optuna.samplers.TPESampler"})
    if held and spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + held
    if settings.n_jobs > 1 and str(spec["_target_"]).endswith("TPESampler"):
        spec.setdefault("constant_liar", True)
    try:
        return instantiate(spec)
    except Exception as exc:
        said = " ".join(str(exc).split(", set env var HYDRA_FULL_ERROR")[0].split())[:300]
        raise ConfigError(
            f"hydra.sweeper.sampler: {said}; check its _target_ and arguments "
            "(optuna.samplers.TPESampler, RandomSampler, GPSampler, ...)"
        ) from None


def space_record(space: SearchSpace) -> dict[str, str]:
    """Each parameter's study name and distribution, as the study keeps them."""
    from optuna.distributions import distribution_to_json

    params = [*space.params, *(p for b in space.branches.values() for ps in b.values() for p in ps)]
    return {p.name: distribution_to_json(p.distribution) for p in params}


def check_same_search(study: Any, settings: Settings, space: SearchSpace, url: str, objective: str) -> None:
    """Refuse, in one line, to continue a study another search made."""
    name, attrs = settings.study_name, study.user_attrs
    other = "use another hydra.sweeper.study_name (or hydra.sweep.dir) for a new study"
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(
            f"study {name} in {url} is a {study.direction.name.lower()} study, and this search asks to "
            f"{settings.direction}: {other}"
        )
    before, now = attrs.get("fixed_overrides"), space.fixed
    if before is not None and sorted(before) != sorted(now):
        raise ConfigError(
            f"study {name} in {url} was run with the overrides [{' '.join(before)}], this command has "
            f"[{' '.join(now)}]: give the same overrides to continue it, or a new hydra.sweeper.study_name "
            "(or hydra.sweep.dir) to start another"
        )
    if attrs.get("objective") not in (None, objective):
        raise ConfigError(
            f"study {name} in {url} optimizes {attrs['objective']}, this search {objective}: {other}"
        )
    kept, asked = attrs.get("space"), space_record(space)
    if kept is not None and kept != asked:
        changed = sorted(k for k in set(kept) | set(asked) if kept.get(k) != asked.get(k))
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise ConfigError(
            f"study {name} in {url} searched another space ({shown} changed): give the search space it "
            f"had to continue it, or {other}"
        )


def enqueue(study: Any, settings: Settings, space: SearchSpace) -> None:
    """The fixed trials (a baseline) to run first, once per study."""
    names = space.names()
    flat = {key: name for name, key in names.items() if "[" not in name}
    for number, entry in enumerate(settings.enqueue):
        params = {}
        for key, value in (entry or {}).items():
            branch = [
                f"{key}[{parent}={spell(entry[parent])}]"
                for parent in space.branches
                if parent in entry and f"{key}[{parent}={spell(entry[parent])}]" in names
            ]
            name = (branch or [flat.get(key)])[0]
            if name is None:
                raise ConfigError(
                    f"hydra.sweeper.enqueue[{number}].{key} is not a searched parameter "
                    f"({', '.join(sorted(set(names.values())))})"
                )
            params[name] = value
        study.enqueue_trial(params, skip_if_exists=True)


def failure_verdict(failed: int, finished: int, max_failure_rate: float) -> bool:
    """Whether a search whose `finished` trials (this run's) hold `failed` failures must stop."""
    return finished >= JUDGED_FROM and failed > max_failure_rate * finished

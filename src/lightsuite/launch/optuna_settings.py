"""`hydra.sweeper` of the Optuna search, read and checked before anything starts.

Hydra hands a sweeper its settings unchecked (a YAML config has no types), so a wrong value would
surface deep inside Optuna, or never: each one is refused here with one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightsuite.errors import ConfigError

SETTINGS = {
    "_target_", "_recursive_", "direction", "n_trials", "n_jobs", "storage", "study_name", "sampler",
    "pruner", "max_failure_rate", "params", "conditional", "enqueue", "trial",
}  # fmt: skip


@dataclass
class Settings:
    """`hydra.sweeper`, checked: each wrong value is refused with one line naming it."""

    direction: str
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    storage: str | None
    study_name: str
    sampler: dict | None
    pruner: Any
    params: dict
    conditional: dict
    enqueue: list[dict]


def read_settings(node: DictConfig, default_name: str) -> Settings:
    raw = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(raw) - SETTINGS)
    if unknown:
        raise ConfigError(f"hydra.sweeper.{unknown[0]} is not a setting of the Optuna sweeper ({_known()})")
    direction = raw.get("direction", "maximize")
    direction = direction[0] if isinstance(direction, list) and len(direction) == 1 else direction
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"hydra.sweeper.direction={direction} must be maximize or minimize")
    sampler, pruner = raw.get("sampler"), raw.get("pruner", "none")
    if sampler is not None and not (isinstance(sampler, dict) and "_target_" in sampler):
        raise ConfigError(
            "hydra.sweeper.sampler must be a config with _target_ (e.g. optuna.samplers.TPESampler)"
        )
    for key, kind in (("params", dict), ("conditional", dict), ("enqueue", list)):
        if not isinstance(raw.get(key) or kind(), kind):
            raise ConfigError(f"hydra.sweeper.{key} must be a {'mapping' if kind is dict else 'list'}")
    return Settings(
        direction=direction,
        n_trials=_number(raw, "n_trials", int, 1),
        n_jobs=_number(raw, "n_jobs", int, 1),
        max_failure_rate=_number(raw, "max_failure_rate", float, 0.0, 1.0),
        storage=None if raw.get("storage") in (None, "") else str(raw["storage"]),
        study_name=str(raw.get("study_name") or default_name),
        sampler=sampler,
        pruner=pruner,
        params=raw.get("params") or {},
        conditional=raw.get("conditional") or {},
        enqueue=list(raw.get("enqueue") or []),
    )


def _known() -> str:
    return "settings: " + ", ".join(sorted(SETTINGS - {"_target_", "_recursive_", "trial"}))


def _number(raw: dict, key: str, kind: type, low: float, high: float | None = None) -> Any:
    value = raw.get(key)
    shown = "an integer" if kind is int else "a number"
    bounds = f"at least {low:g}" if high is None else f"in [{low:g}, {high:g}]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok or not (value >= low and (high is None or value <= high)):
        raise ConfigError(f"hydra.sweeper.{key}={value} must be {shown} {bounds}")
    return kind(value)

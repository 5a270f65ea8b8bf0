"""An Optuna search space written in Hydra's sweep syntax, with conditional parameters.

`hydra.sweeper.params` maps override keys to Hydra's sweep values, which become Optuna
distributions: `interval(a, b)` a float (`int(interval(a, b))` an integer), `tag(log, ...)` its
log scale, `range(a, b[, step])` integers from a up to b exclusive (as Hydra counts), `choice(...)`
a categorical; a plain value is passed to every trial as is. `hydra.sweeper.conditional` adds
parameters that exist only for one value of a choice (the hook for search spaces beyond flat lists):

    params:
      task/optimizer: choice(sgd, adamw)
    conditional:
      task/optimizer:
        sgd:   {task.optimizer.lr: tag(log, interval(0.01, 0.5))}
        adamw: {task.optimizer.lr: tag(log, interval(1e-4, 1e-2))}

Each branch's parameters get their own name in the study (`task.optimizer.lr[task/optimizer=sgd]`),
so the sampler never mixes the two ranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from lightsuite.errors import ConfigError

PRIMITIVES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One searched value: the override it sets, its name in the study and its distribution."""

    key: str
    name: str
    distribution: Any  # an optuna distribution
    spelled: dict[Any, str] = field(default_factory=dict)  # a choice's values as written

    def suggest(self, trial: Any) -> Any:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.name, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, log=d.log)

    def override(self, value: Any) -> str:
        return f"{self.key}={self.spelled.get(value, spell(value))}"

    def ends(self) -> list[Any]:
        """The values a preflight composes: every choice, or both ends of a numeric range."""
        from optuna.distributions import CategoricalDistribution

        if isinstance(self.distribution, CategoricalDistribution):
            return list(self.distribution.choices)
        return [self.distribution.low, self.distribution.high]


@dataclass
class SearchSpace:
    """The flat parameters, the fixed overrides and the branches of the conditional ones."""

    params: list[Param]
    fixed: list[str]
    branches: dict[str, dict[str, list[Param]]]  # choice key -> its value as written -> params

    def sample(self, trial: Any) -> list[str]:
        """Suggest every parameter this trial has (its branches' too); the trial's overrides."""
        overrides = list(self.fixed)
        for param in self.params:
            value = param.suggest(trial)
            overrides.append(param.override(value))
            for extra in self.branches.get(param.key, {}).get(param.spelled.get(value, spell(value)), []):
                overrides.append(extra.override(extra.suggest(trial)))
        return overrides

    def probes(self) -> list[list[str]]:
        """Trials a preflight composes: each parameter at each end (or each choice, with its
        branch at its low ends), the others at their first value."""
        first = {param.key: param.ends()[0] for param in self.params}
        probes = []
        for param in self.params:
            for value in param.ends():
                values = {**first, param.key: value}
                trial = []
                for p in self.params:
                    trial.append(p.override(values[p.key]))
                    branch = self.branches.get(p.key, {}).get(
                        p.spelled.get(values[p.key], spell(values[p.key]))
                    )
                    trial += [extra.override(extra.ends()[0]) for extra in branch or []]
                probes.append([*self.fixed, *trial])
        for key, branches in self.branches.items():
            for when, extras in branches.items():
                for extra in extras:
                    rest = [p.override(first[p.key]) for p in self.params if p.key != key]
                    probes.append([*self.fixed, *rest, f"{key}={when}", extra.override(extra.ends()[-1])])
        return list({tuple(p): p for p in probes}.values()) or [list(self.fixed)]

    def names(self) -> dict[str, str]:
        """Each study name of a parameter -> the override key it sets."""
        params = [*self.params, *(p for b in self.branches.values() for ps in b.values() for p in ps)]
        return {p.name: p.key for p in params}


def spell(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    parser = OverridesParser.create()
    # bare when Hydra reads it back as this string (not `1_000` -> 1000, `true` -> True), else quoted
    for spelled in (text, "'" + text.replace("'", "\\'") + "'", '"' + text.replace('"', '\\"') + '"'):
        try:
            if parser.parse_override(f"k={spelled}").value() == text:
                return spelled
        except HydraException:
            continue
    raise ConfigError(f"{text!r} cannot be written as a Hydra override value; use a plainer name")


def parse_space(
    params: Mapping[str, Any] | None,
    conditional: Mapping[str, Any] | None = None,
    arguments: list[str] | None = None,
) -> SearchSpace:
    """Parse the sweeper's `params`, `conditional` and the command line's overrides (a sweep value
    on the command line, `-m` style, is searched too); a `ConfigError` names any bad entry."""
    parser = OverridesParser.create()
    params_list: list[Param] = []
    fixed: list[str] = []
    entries = [(f"hydra.sweeper.params.{k}", f"{k}={v}") for k, v in (params or {}).items()]
    entries += [(f"{arg.split('=', 1)[0]} (on the command line)", arg) for arg in arguments or []]
    for where, text in entries:
        override = _parse(parser, text, where)
        key = override.get_key_element()
        # a later entry for the same key wins: the command line over the preset, a value over a range
        params_list = [p for p in params_list if p.key != key]
        if override.is_sweep_override():
            params_list.append(_param(override, key, key, where))
        else:
            fixed.append(text)
    branches: dict[str, dict[str, list[Param]]] = {}
    for key, cases in (conditional or {}).items():
        owner = next((p for p in params_list if p.key == key), None)
        if owner is None or not owner.spelled:
            raise ConfigError(
                f"hydra.sweeper.conditional.{key}: {key} is not a choice(...) in hydra.sweeper.params; "
                f"a conditional block hangs off a searched choice, e.g. params.{key}: choice(a, b)"
            )
        if not isinstance(cases, Mapping):
            raise ConfigError(f"hydra.sweeper.conditional.{key} must map each value of {key} to its params")
        written = set(owner.spelled.values())
        for when, extra in cases.items():
            when = spell(when) if not isinstance(when, str) else when
            if when not in written:
                raise ConfigError(
                    f"hydra.sweeper.conditional.{key}.{when}: {when} is not one of {key}'s choices "
                    f"({', '.join(sorted(written))})"
                )
            found = []
            for sub_key, value in (extra or {}).items():
                where = f"hydra.sweeper.conditional.{key}.{when}.{sub_key}"
                override = _parse(parser, f"{sub_key}={value}", where)
                if not override.is_sweep_override():
                    raise ConfigError(f"{where}: {value} is not a sweep value (interval, range, choice)")
                found.append(_param(override, sub_key, f"{sub_key}[{key}={when}]", where))
            branches.setdefault(key, {})[when] = found
    return SearchSpace(params_list, fixed, branches)


def _parse(parser: OverridesParser, text: str, where: str) -> Any:
    try:
        return parser.parse_override(text)
    except HydraException as exc:
        raise ConfigError(f"{where}: cannot parse {text!r} ({' '.join(str(exc).split())[:200]})") from None


def _param(override: Any, key: str, name: str, where: str) -> Param:
    """The Optuna distribution of one Hydra sweep value; bad ranges refused with the fix."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    tags = set(sweep.tags)
    log = "log" in tags
    if tags - {"log"}:
        raise ConfigError(f"{where}: unknown tag {sorted(tags - {'log'})[0]}; the one tag understood is log")
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise ConfigError(f"{where}: tag(log, ...) applies to interval or range, not to a choice")
        choices = list(sweep.list)
        if not choices or not all(isinstance(c, PRIMITIVES) for c in choices):
            raise ConfigError(
                f"{where}: a choice of numbers, strings or booleans only; for lists or configs use a "
                "config group (e.g. model: choice(resnet20, plain20))"
            )
        written = list(override.sweep_string_iterator())
        return Param(key, name, CategoricalDistribution(choices), dict(zip(choices, written, strict=True)))
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        _check_range(where, low, high, log, f"interval({low}, {high})")
        if isinstance(low, int) and isinstance(high, int):
            return Param(key, name, IntDistribution(low, high, log=log))
        return Param(key, name, FloatDistribution(float(low), float(high), log=log))
    if isinstance(sweep, RangeSweep):
        values = list(sweep.range())
        if not values:
            raise ConfigError(f"{where}: range({sweep.start}, {sweep.stop}, {sweep.step}) holds no value")
        if all(isinstance(v, int) for v in values) and len(values) > 1:
            _check_range(where, values[0], values[-1], log, "this range")
            step = 1 if log else int(sweep.step)
            if log and sweep.step != 1:
                raise ConfigError(f"{where}: tag(log, range(...)) needs step 1")
            return Param(key, name, IntDistribution(min(values), max(values), log=log, step=abs(step)))
        choices = [float(v) for v in values]
        return Param(key, name, CategoricalDistribution(choices), {c: spell(c) for c in choices})
    raise ConfigError(f"{where}: {type(sweep).__name__} is not a search value (interval, range, choice)")


def _check_range(where: str, low: float, high: float, log: bool, shown: str) -> None:
    if not low < high:
        raise ConfigError(f"{where}: {shown} is empty: its low end must be below its high end")
    if log and low <= 0:
        raise ConfigError(f"{where}: tag(log, {shown}) needs a low end above 0 (a log scale has no 0)")

"""`trainer.max_time`, a training budget that holds across requeues and resumes.

Lightning's `Timer` (which `max_time` adds) keeps the training time spent so far in each checkpoint
and starts a resumed fit from it, so a job requeued twice stops when the three segments together
have spent the budget. A mid-epoch checkpoint at each stop (run/preemption.py) means little time
goes uncounted. What this module adds: reading the budget as Lightning does, checked before any
work; the line saying the budget ended a run; and a resume with a larger budget training on.
Light at import (the config checks use it before Lightning loads).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from lightsuite.errors import ConfigError

_FORMAT = re.compile(r"^\d+:\d+:\d+:\d+$")
_UNITS = ("days", "hours", "minutes", "seconds")
USAGE = 'a duration "DD:HH:MM:SS" (e.g. "00:12:00:00" for 12 hours) or {hours: 12, minutes: 30}'


def budget_seconds(value: Any, key: str = "trainer.max_time") -> float | None:
    """The budget in seconds (None: no budget), or one line saying what to write instead."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and _FORMAT.match(value.strip()):
        seconds = timedelta(
            **dict(zip(_UNITS, map(int, value.strip().split(":")), strict=True))
        ).total_seconds()
    elif isinstance(value, Mapping) and value and set(value) <= {"weeks", *_UNITS, "milliseconds"}:
        try:
            seconds = timedelta(**{k: float(v) for k, v in value.items()}).total_seconds()
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={dict(value)} is not a duration; use {USAGE}") from None
    else:
        shown = dict(value) if isinstance(value, Mapping) else value
        raise ConfigError(f"{key}={shown!r} is not a duration; use {USAGE}")
    if seconds <= 0:
        raise ConfigError(f"{key}={value!r} leaves no time to train; use {USAGE}")
    return seconds


def _timer(trainer: Any) -> Any:
    from pytorch_lightning.callbacks import Timer

    return next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)


def spent(trainer: Any) -> bool:
    """Whether `trainer.max_time` stopped this fit."""
    timer = _timer(trainer)
    return bool(timer is not None and timer._duration is not None and timer.time_remaining() <= 0)


def budget_line(trainer: Any, max_time: Any) -> str | None:
    """`trainer.max_time=... ended the run after 62 s of training (40 s of it in earlier segments)`."""
    timer = _timer(trainer)
    if timer is None or not spent(trainer):
        return None
    total = timer.time_elapsed("train")
    earlier = f" ({timer._offset:.0f} s of it in earlier segments)" if timer._offset else ""
    return f"trainer.max_time={max_time} ended the run after {total:.0f} s of training{earlier}; testing now"

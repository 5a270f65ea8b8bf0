"""User-facing errors: raised where a config value or a file is wrong, reported as one line.

Inner code raises these with a message that names the problem and the fix; the entry points turn
them into `error: ...` on stderr and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException


class LightsuiteError(Exception):
    """Base of the errors a user can fix from the command line."""


class ConfigError(LightsuiteError, ValueError):
    """A config value is missing, of the wrong kind or out of range."""


class DataNotFoundError(LightsuiteError, FileNotFoundError):
    """A data set's files are not where the config says."""


class DivergedError(LightsuiteError, RuntimeError):
    """Training produced a non-finite loss."""


def user_error(exc: BaseException) -> LightsuiteError | None:
    """The LightsuiteError behind `exc` (Hydra and Lightning wrap what targets raise), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LightsuiteError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a user error as one line and exit 1; let real bugs keep their traceback."""
    try:
        yield
    except Exception as exc:
        err = user_error(exc)
        if err is None and isinstance(exc, InstantiationException):
            err = ConfigError(str(exc).replace("\n", " "))
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None

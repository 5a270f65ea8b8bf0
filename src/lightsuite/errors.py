"""User-facing errors: raised where a config value or a file is wrong, reported as one line.

Inner code raises these with a message that names the problem and the fix; the entry points turn
them into `error: ...` on stderr and an exit status instead of a traceback:

0 success, 1 a user error (config, files, data, a diverging loss), 130 interrupted (Ctrl-C);
anything else, with a traceback, is a bug worth reporting.
"""

from __future__ import annotations

import logging
import re
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


class RunInterrupted(LightsuiteError):
    """The user stopped the run (Ctrl-C); the message says how to resume."""

    exit_code = 130


def user_error(exc: BaseException) -> LightsuiteError | None:
    """The LightsuiteError behind `exc` (Hydra and Lightning wrap what targets raise), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LightsuiteError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _file_error(exc: BaseException) -> LightsuiteError | None:
    """A file the user pointed at that cannot be read or written, as a one-line error."""
    while exc is not None:
        if type(exc).__name__ == "UnidentifiedImageError":  # PIL, also re-raised from loader workers
            found = re.search(r"name='([^']+)'", str(exc))
            name = found.group(1) if found else str(exc).strip().splitlines()[-1]
            return DataNotFoundError(f"{name} is not an image that can be read; remove or replace it")
        if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
            fix = "fix its permissions" if isinstance(exc, PermissionError) else "check the path"
            return ConfigError(
                f"cannot use {exc.filename}: {exc.strerror.lower()}; {fix}, or point the config at "
                "another path (paths.data_dir, paths.log_dir, data.path)"
            )
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a user error as one line and exit with its status; let real bugs keep their traceback."""
    try:
        yield
    except KeyboardInterrupt:
        log_to_job_files("error: interrupted")
        print("error: interrupted", file=sys.stderr)
        raise UserExit(RunInterrupted("interrupted")) from None
    except Exception as exc:
        err = user_error(exc) or _file_error(exc)
        if err is None and isinstance(exc, InstantiationException):
            err = ConfigError(str(exc).replace("\n", " "))
        if err is None:
            log_to_job_files(f"{type(exc).__name__}: {exc}", exc)
            raise
        log_to_job_files(f"error: {err}")
        print(f"error: {err}", file=sys.stderr)
        raise UserExit(err) from None


class UserExit(SystemExit):
    """The exit after a user error was reported; `error` is what was reported (for sweeps)."""

    def __init__(self, error: LightsuiteError) -> None:
        super().__init__(getattr(error, "exit_code", 1))
        self.error = error

    def __reduce__(self) -> tuple:
        return type(self), (self.error,)


def log_to_job_files(message: str, exc: BaseException | None = None) -> None:
    """Record an error in the run's log file (Hydra's `<run dir>/<job name>.log`) only.

    The console already shows it; the file keeps it for `lightsuite-report`, which shows why a job
    of a sweep failed. Hydra itself never writes a job's exception into that job's log.
    """
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("lightsuite", logging.ERROR, __file__, 0, message, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)

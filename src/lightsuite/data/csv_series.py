"""A series of one's own from a CSV file: `data=csv data.path=my.csv data.time_column=month ...`.

Every way the file can be wrong is reported as one line naming the fix: a missing file, a missing
column (with the columns that exist), unparseable times, non-numeric or missing values (missing
ones can be filled by linear interpolation with `data.interpolate=true`), and too few rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightsuite.data.series import SeriesDataModule
from lightsuite.errors import ConfigError, DataNotFoundError


class CSVSeriesDataModule(SeriesDataModule):
    """The target column of a CSV, in the order of its time column, with optional covariate columns."""

    def __init__(
        self,
        path: str | None = None,
        time_column: str | None = None,
        target_column: str | None = None,
        period: int | None = None,
        covariates: list[str] | None = None,
        interpolate: bool = False,
        **kwargs: Any,
    ) -> None:
        """Windowing, split and transforms are `SeriesDataModule`'s keywords (lookback, horizon, ...)."""
        given = {"path": path, "time_column": time_column, "target_column": target_column, "period": period}
        unset = [key for key, value in given.items() if value is None]
        if unset:
            raise ConfigError(
                f"data=csv needs {', '.join(f'data.{key}' for key in unset)}: e.g. data.path=my.csv "
                "data.time_column=month data.target_column=value data.period=12"
            )
        super().__init__(period=period, **kwargs)
        self.path = Path(path).expanduser()
        self.time_column, self.target_column = time_column, target_column
        self.covariates = list(covariates or [])
        self.num_covariates = len(self.covariates)
        self.interpolate = interpolate

    def load_series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frame = self._read()
        columns = [self.time_column, self.target_column, *self.covariates]
        keys = ["time_column", "target_column"] + ["covariates"] * len(self.covariates)
        for key, column in zip(keys, columns, strict=True):
            if column not in frame.columns:
                raise ConfigError(
                    f"data.{key}={column!r} is not a column of {self.path}; "
                    f"its columns are: {', '.join(map(str, frame.columns))}"
                )
        times = self._times(frame[self.time_column])
        frame = frame.assign(**{self.time_column: times}).sort_values(self.time_column, kind="stable")
        if frame[self.time_column].duplicated().any():
            first = frame[self.time_column][frame[self.time_column].duplicated()].iloc[0]
            raise ConfigError(
                f"data.time_column={self.time_column!r} repeats the time {first} in {self.path}; "
                "keep one row per time step"
            )
        values = [self._numeric(frame[column], column) for column in columns[1:]]
        cov = np.stack(values[1:], axis=1) if self.covariates else np.zeros((len(frame), 0))
        return values[0], cov, frame[self.time_column].to_numpy()

    def _read(self) -> pd.DataFrame:
        if not self.path.is_file():
            raise DataNotFoundError(
                f"data.path={self.path}: no such file; pass the path of a CSV with a header row"
            )
        try:
            frame = pd.read_csv(self.path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(
                f"data.path={self.path} is not a readable CSV ({reason}); fix the file"
            ) from exc
        if frame.empty:
            raise ConfigError(f"data.path={self.path} has a header but no rows")
        return frame

    def _times(self, column: pd.Series) -> pd.Series:
        """Numbers stay numbers (years, steps); anything else must parse as dates."""
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all():
            return numeric
        parsed = pd.to_datetime(column, errors="coerce", format="mixed")
        if parsed.isna().any():
            neither = (parsed.isna() & numeric.isna()).to_numpy()
            row = int(neither.argmax() if neither.any() else parsed.isna().to_numpy().argmax())
            what = "is neither a number nor a date" if neither.any() else "is a number among dates"
            raise ConfigError(
                f"data.time_column={self.time_column!r}: {column.iloc[row]!r} (row {row + 2} of {self.path}) "
                f"{what}; fix the time column"
            )
        return parsed

    def _numeric(self, column: pd.Series, name: str) -> np.ndarray:
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ConfigError(
                f"column {name!r} of {self.path} has {int(bad.sum())} non-numeric values "
                f"(first {column.iloc[row]!r} at row {column.index[row] + 2}); fix or remove those rows"
            )
        missing = numbers.isna()
        if missing.any():
            if not self.interpolate:
                row = int(missing.to_numpy().argmax())
                raise ConfigError(
                    f"column {name!r} of {self.path} has {int(missing.sum())} missing values (first at row "
                    f"{column.index[row] + 2}); fill them by linear interpolation with data.interpolate=true"
                )
            return self._fill(numbers, name)
        return numbers.to_numpy(float)

    def _fill(self, numbers: pd.Series, name: str) -> np.ndarray:
        """Linear interpolation inside each split part: a gap is never filled from a later part.

        Filled across the whole series, a gap at the end of the training part would take half its
        value from the first validation point: a leak into training (and the scaler fitted on it).
        """
        n_train, n_val = self.split_sizes(len(numbers))
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, None)}
        parts = []
        for stage, (start, end) in bounds.items():
            part = numbers.iloc[start:end]
            if len(part) and part.isna().all():
                raise ConfigError(
                    f"column {name!r} of {self.path} has no value in its {stage} part, so nothing there can "
                    "be interpolated; fill that stretch of the file or change data.val_fraction/test_fraction"
                )
            parts.append(part.interpolate(limit_direction="both"))
        return pd.concat(parts).to_numpy(float)

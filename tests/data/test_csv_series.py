"""`data=csv`: one's own series from a file, and every way the file can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

from lightsuite.data.csv_series import CSVSeriesDataModule
from lightsuite.errors import ConfigError, DataNotFoundError


def write(tmp_path, text: str):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def monthly(n: int = 60, missing: int | None = None, junk: int | None = None) -> str:
    rows = ["month,value,holiday"]
    for i in range(n):
        value = "" if i == missing else ("about 3" if i == junk else f"{10 + np.sin(i / 2):.4f}")
        rows.append(f"{2000 + i // 12}-{1 + i % 12:02d}-01,{value},{i % 12 == 11:d}")
    return "\n".join(rows) + "\n"


def module(path, **kwargs) -> CSVSeriesDataModule:
    args = {"time_column": "month", "target_column": "value", "period": 12, "lookback": 6, "horizon": 2}
    return CSVSeriesDataModule(path=str(path), **{**args, **kwargs})


def test_csv_series_in_time_order_with_a_covariate(tmp_path):
    text = monthly()
    header, *rows = text.strip().splitlines()
    path = write(tmp_path, "\n".join([header, *reversed(rows)]) + "\n")  # file in reverse order
    dm = module(path, covariates=["holiday"])
    assert dm.net_kwargs == {"input_size": 2, "output_size": 2}
    dm.setup()
    assert (np.diff(dm.times.astype("int64")) > 0).all()
    assert dm.series[0] == pytest.approx(10.0)
    assert dm.windows["train"]["x"].shape[-1] == 2 and dm.windows["test"]["future"].shape[-1] == 1


def test_unset_keys_are_named():
    with pytest.raises(ConfigError, match=r"data=csv needs data.path, data.period: e.g."):
        CSVSeriesDataModule(time_column="month", target_column="value")


def test_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data.path=.*no such file"):
        module(tmp_path / "nope.csv").setup()


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    path = write(tmp_path, monthly())
    with pytest.raises(ConfigError, match=r"target_column='sales'.*month, value, holiday"):
        module(path, target_column="sales").setup()
    with pytest.raises(ConfigError, match=r"covariates='weekday'.*month, value, holiday"):
        module(path, covariates=["weekday"]).setup()


def test_non_numeric_values_name_the_first_row(tmp_path):
    path = write(tmp_path, monthly(junk=7))
    with pytest.raises(ConfigError, match=r"'value'.*1 non-numeric.*'about 3' at row 9"):
        module(path).setup()


def test_missing_values_are_an_error_or_interpolated(tmp_path):
    path = write(tmp_path, monthly(missing=5))
    with pytest.raises(ConfigError, match=r"1 missing values .*row 7.*data.interpolate=true"):
        module(path).setup()
    dm = module(path, interpolate=True)
    dm.setup()
    assert dm.series[5] == pytest.approx((dm.series[4] + dm.series[6]) / 2)


def test_interpolation_never_fills_a_gap_from_a_later_split_part(tmp_path):
    """A gap at the end of the training part is filled from training values only, whatever follows."""
    rows = [(i, float(i)) for i in range(40)]
    n_train = module(tmp_path / "unread.csv").split_sizes(len(rows))[0]
    text = "month,value\n" + "".join(f"{m},{'' if m == n_train - 1 else v}\n" for m, v in rows)
    dm = module(write(tmp_path, text), interpolate=True)
    dm.setup()
    # the last known training value (n_train - 2), not halfway to the first validation point
    assert dm.series[n_train - 1] == pytest.approx(n_train - 2)
    assert dm.series[n_train - 2] == pytest.approx(n_train - 2)
    later = "".join(f"{m},{'' if m == n_train - 1 else (v if m < n_train else 1e6)}\n" for m, v in rows)
    moved = module(write(tmp_path, "month,value\n" + later), interpolate=True)
    moved.setup()
    np.testing.assert_array_equal(moved.series[:n_train], dm.series[:n_train])
    assert (moved.transform.mean, moved.transform.std) == (dm.transform.mean, dm.transform.std)


def test_too_few_rows_for_lookback_horizon_and_split(tmp_path):
    path = write(tmp_path, monthly(n=12))
    with pytest.raises(ConfigError, match=r"12 rows .*lookback=6 \+ horizon=2"):
        module(path).setup()


def test_bad_times_and_repeated_times(tmp_path):
    with pytest.raises(ConfigError, match=r"'soon' .*neither a number nor a date"):
        module(write(tmp_path, "month,value\n1,2\nsoon,3\n")).setup()
    with pytest.raises(ConfigError, match=r"repeats the time 3"):
        module(write(tmp_path, "month,value\n" + "".join(f"{min(i, 3)},{i}\n" for i in range(40)))).setup()


def test_empty_and_header_only_files(tmp_path):
    with pytest.raises(ConfigError, match="not a readable CSV"):
        module(write(tmp_path, "")).setup()
    with pytest.raises(ConfigError, match="no rows"):
        module(write(tmp_path, "month,value\n")).setup()


def test_log_of_negative_values(tmp_path):
    path = write(tmp_path, "t,v\n" + "".join(f"{i},{i - 5}\n" for i in range(60)))
    with pytest.raises(ConfigError, match=r"data.log=true"):
        module(path, time_column="t", target_column="v", log=True).setup()

"""Demand per item and period from sales lines: the series that forecasting and replenishment read.

Sales lines are summed per item and period (returns net out; a period whose returns exceed its sales
counts as zero demand); each item's series runs from its first sale to the last period (the file's, or
`until`), with zeros where nothing sold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.loaders import read_table, read_times

#: pandas renamed period-end aliases; accept the short forms people type.
_FREQ_ALIASES = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "H": "h"}


def normalise_freq(freq: str) -> str:
    head, _, anchor = freq.partition("-")
    head = _FREQ_ALIASES.get(head, head)
    try:
        pd.tseries.frequencies.to_offset(head + (f"-{anchor}" if anchor else ""))
    except ValueError as exc:
        raise ValueError(f"unknown frequency {freq!r} (use D, W, M, Q or a pandas alias)") from exc
    return head + (f"-{anchor}" if anchor else "")


def demand_series(sales: pd.DataFrame, freq: str, until=None) -> pd.DataFrame:
    """Demand per item and period as statsforecast's long frame (`unique_id`, `ds`, `y`), zero-filled
    up to the last period with a sale or, when given, the period holding `until`.

    Summed with numpy over (item, period) codes: pandas binning runs on the distinct times only, so a
    wide table's long form (M5 by store: 59M rows) costs a few bytes a row, not a group-by's hundreds."""
    if sales.empty:
        raise ValueError("no sales rows to forecast from")
    freq = normalise_freq(freq)
    ts = sales["ts"].dt.tz_convert("UTC").dt.tz_localize(None) if sales["ts"].dt.tz else sales["ts"]
    item = sales["item_id"]
    if isinstance(item.dtype, pd.CategoricalDtype):  # a wide table's (`load_wide_sales`)
        item = item.cat.rename_categories(item.cat.categories.astype(str))
    else:
        item = item.astype(str)
    item_codes, items = pd.factorize(item, sort=True)
    time_codes, times = pd.factorize(ts, sort=True)
    bins = pd.DataFrame({"ts": times}).groupby(pd.Grouper(key="ts", freq=freq)).size()
    bin_of_time = np.repeat(np.arange(len(bins)), bins.to_numpy())  # times are sorted, bins in order
    last = bins.index.max()
    if until is not None:
        until = pd.Timestamp(until)
        until = until.tz_convert("UTC").tz_localize(None) if until.tz else until
        label = pd.DataFrame({"ts": [until]}).groupby(pd.Grouper(key="ts", freq=freq)).size().index[0]
        last = max(last, label)
    periods = pd.date_range(bins.index.min(), last, freq=freq)
    known = (item_codes >= 0) & (time_codes >= 0)
    key = item_codes[known].astype(np.int64) * len(periods) + bin_of_time[time_codes[known]]
    size = len(items) * len(periods)
    quantity = np.nan_to_num(sales["quantity"].to_numpy(dtype="float64")[known])  # as a sum skips NaN
    values = np.bincount(key, weights=quantity, minlength=size).reshape(len(items), len(periods))
    started = np.maximum.accumulate(np.bincount(key, minlength=size).reshape(values.shape) > 0, axis=1)
    item_idx, period_idx = np.nonzero(started)
    return pd.DataFrame(
        {
            "unique_id": np.asarray(items, dtype=object)[item_idx],
            "ds": periods[period_idx],
            "y": np.clip(values[item_idx, period_idx], 0.0, None),
        }
    )


def load_event_calendar(path: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Known promotion windows from a CSV or Parquet file with `start` and `end` columns (end exclusive;
    dates or times, UTC when no zone is given): the platform's planned discount seasons and sales.
    Start and end are read together, in one layout (`features.loaders.read_times`): `01.12.2010` is
    1 December, not 12 January as pandas' mixed parsing read it."""
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else read_table(path)
    missing = {"start", "end"} - set(frame.columns)
    if missing:
        raise ValueError(f"the events calendar needs columns start and end (missing {sorted(missing)})")
    times = read_times(pd.concat([frame["start"], frame["end"]], ignore_index=True))
    start, end = times.iloc[: len(frame)], times.iloc[len(frame) :].reset_index(drop=True)
    if start.isna().any() or end.isna().any() or (end <= start).any():
        raise ValueError("every event in the calendar needs a start before its end")
    return list(zip(start, end, strict=True))

"""Read interaction logs from files into one clean events frame, and say exactly what was thrown out.

Every loader returns `(events, LoadReport)`. `events` has the columns `user_id`, `item_id` (str),
`ts` (datetime64[ns, UTC], NaT without a time column) and, when the source has them, `event_type` (str)
and `value` (float64). Rows keep their file order (the MovieLens benchmark split depends on it).

Real retail logs decide a few things here:
- Rows with a missing id, an unreadable time or a non-numeric value are dropped and counted by reason
  in the report (never silently).
- Repeat events (repeat purchases) are kept one row each: `build_interactions` sums them.
- A negative value (a returned quantity) is valid data, kept as is and counted in the report's notes;
  `build_interactions` subtracts returns from the pair's weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags at the end of each `u.item` row, in file order (`u.genre`)."""

INTERACTION_EVENT_TYPES = ("view", "favorite", "cart", "purchase")
"""Synthetic-marketplace event types that say something about a shopper's taste in a product."""


@dataclass
class LoadReport:
    """What a loader read, kept and dropped (by reason), plus counts of notable rows it kept."""

    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.rows_dropped

    def add_dropped(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def add_unparsed(self, n: int) -> None:
        """Count lines the file reader skipped because their field count was wrong."""
        self.rows_read += n
        self.add_dropped("wrong number of fields", n)

    def summary(self) -> str:
        parts = [f"{self.source}: read {self.rows_read} rows, kept {self.rows_kept}"]
        if self.dropped:
            parts.append("dropped " + ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())))
        if self.notes:
            parts.append("notes: " + ", ".join(f"{n} {what}" for what, n in sorted(self.notes.items())))
        return "; ".join(parts)


def load_events(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    event_col: str | None = None,
    value_col: str | None = None,
    sep: str = ",",
    time_format: str | None = None,
    basket_col: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a CSV or Parquet event file (or Parquet directory) with the given column names.

    Time may be unix seconds, ISO-8601 strings, or another layout: `time_format` (strftime codes) or,
    without it, the common layout that reads most values (noted in the report). Ids are read as
    strings so leading zeros survive.
    `sep` is the CSV delimiter; a line with the wrong number of fields is counted and skipped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no event file at {path}")
    wanted = [c for c in (user_col, item_col, time_col, event_col, value_col, basket_col) if c]
    if path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        available = pq.ParquetDataset(path).schema.names
        _require_columns(wanted, available, path)
        raw, broken = pd.read_parquet(path, columns=wanted), 0
    else:
        header = pd.read_csv(path, sep=sep, nrows=0).columns
        _require_columns(wanted, header, path)
        raw, broken = _read_text_table(path, sep=sep, columns=wanted)
    events, report = clean_events(
        raw, source=str(path), user_col=user_col, item_col=item_col, time_col=time_col,
        event_col=event_col, value_col=value_col, time_format=time_format, basket_col=basket_col,
    )  # fmt: skip
    report.add_unparsed(broken)
    return events, report


def load_movielens(path: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """Read MovieLens `u.data` (tab-separated user, item, rating, unix time); the rating becomes `value`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MovieLens ratings file at {path}")
    raw, broken = _read_text_table(path, sep="\t", names=["user", "item", "rating", "ts"])
    events, report = clean_events(
        raw, source=str(path), user_col="user", item_col="item", time_col="ts", value_col="rating"
    )
    report.add_unparsed(broken)
    return events, report


def load_movielens_items(path: str | Path) -> pd.DataFrame:
    """Read MovieLens `u.item` (latin-1, `|`-separated) into item features indexed by item id (str).

    Columns: `title`, `release_date` (datetime, NaT when blank) and one 0/1 int8 column per genre.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MovieLens item file at {path}")
    names = ["item_id", "title", "release_date", "video_release_date", "url", *MOVIELENS_GENRES]
    items = pd.read_csv(path, sep="|", header=None, names=names, encoding="latin-1", dtype={"item_id": "str"})
    items["release_date"] = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
    items[list(MOVIELENS_GENRES)] = items[list(MOVIELENS_GENRES)].astype("int8")
    return items.drop(columns=["video_release_date", "url"]).set_index("item_id")


def load_synthetic(directory: str | Path) -> tuple[pd.DataFrame, LoadReport, pd.DataFrame, pd.DataFrame]:
    """Read a generated marketplace (docs/data-contracts.md): events, products and shoppers.

    Only taste-revealing events (`INTERACTION_EVENT_TYPES`) are kept; the others (searches, coupon
    events) are counted in the report's notes, not treated as malformed. `value` is the event's
    `quantity`, so a negative quantity (a return) cancels a purchase in `build_interactions`.
    Returns `(events, report, products, shoppers)`; the side tables are indexed by id.
    """
    directory = Path(directory)
    if not (directory / "events").is_dir():
        raise FileNotFoundError(f"{directory} is not a generated marketplace (no events/ directory)")
    raw = pd.read_parquet(
        directory / "events", columns=["shopper_id", "product_id", "ts", "event_type", "quantity"]
    )
    interaction = raw["event_type"].isin(INTERACTION_EVENT_TYPES)
    events, report = clean_events(
        raw[interaction], source=str(directory / "events"), user_col="shopper_id", item_col="product_id",
        time_col="ts", event_col="event_type", value_col="quantity",
    )  # fmt: skip
    report.notes["skipped non-interaction events"] = int((~interaction).sum())
    products = pd.read_parquet(directory / "products.parquet").set_index("product_id")
    shoppers = pd.read_parquet(directory / "shoppers.parquet").set_index("shopper_id")
    return events, report, products, shoppers


def clean_events(
    raw: pd.DataFrame,
    *,
    source: str,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    event_col: str | None = None,
    value_col: str | None = None,
    time_format: str | None = None,
    basket_col: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and normalise an events frame; drop bad rows and count them by reason.

    `basket_col` (an order or transaction id) becomes the string column `basket_id`."""
    report = LoadReport(source=source, rows_read=len(raw))
    user = _ids(raw[user_col])
    item = _ids(raw[item_col])
    bad = user.isna() | item.isna()
    report.add_dropped("missing id", int(bad.sum()))

    if time_col:
        ts, layout = _parse_time(raw[time_col], time_format)
        if layout is not None:
            report.notes[f"times read as {layout}"] = int(ts.notna().sum())
        bad_ts = ts.isna() & ~bad
        report.add_dropped("bad timestamp", int(bad_ts.sum()))
        bad |= bad_ts
    else:
        ts = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    out = {"user_id": user, "item_id": item, "ts": ts}
    if event_col:
        kind = _ids(raw[event_col])
        bad_kind = kind.isna() & ~bad
        report.add_dropped("missing event type", int(bad_kind.sum()))
        bad |= bad_kind
        out["event_type"] = kind
    if value_col:
        value = pd.to_numeric(raw[value_col], errors="coerce").astype("float64")
        bad_value = ~np.isfinite(value) & ~bad
        report.add_dropped("bad value", int(bad_value.sum()))
        bad |= bad_value
        negative = int(((value < 0) & ~bad).sum())
        if negative:
            report.notes["negative value (returns)"] = negative
        out["value"] = value
    if basket_col:
        basket = _ids(raw[basket_col])
        bad_basket = basket.isna() & ~bad
        report.add_dropped("missing basket id", int(bad_basket.sum()))
        bad |= bad_basket
        out["basket_id"] = basket
    events = pd.DataFrame(out)[~bad.to_numpy()].reset_index(drop=True)
    return events, report


def _read_text_table(
    path: Path, *, sep: str, columns: list[str] | None = None, names: list[str] | None = None
) -> tuple[pd.DataFrame, int]:
    """Read a delimited text file as strings with pyarrow (fast); count rows with a wrong field count."""
    from pyarrow import csv

    broken = 0

    def skip_and_count(_row) -> str:
        nonlocal broken
        broken += 1
        return "skip"

    table = csv.read_csv(
        path,
        read_options=csv.ReadOptions(column_names=names),
        parse_options=csv.ParseOptions(delimiter=sep, invalid_row_handler=skip_and_count),
        convert_options=csv.ConvertOptions(
            include_columns=columns or names,
            column_types=dict.fromkeys(columns or names, "string"),
            strings_can_be_null=False,
        ),
    )
    return table.to_pandas(), broken


def _require_columns(wanted: list[str], available, path: Path) -> None:
    missing = [c for c in wanted if c not in set(available)]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; it has {list(available)}")


def _ids(column: pd.Series) -> pd.Series:
    """Ids as stripped strings; blanks become missing."""
    text = column.astype("str").str.strip()
    return text.where(column.notna() & (text != ""))


# Layouts seen in exported shop data; month-first comes before day-first, so a column where both read
# every value (all days <= 12) is taken as month-first, the layout of US exports such as UCI Online Retail.
TIME_LAYOUTS = (
    "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y",
    "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
    "%Y%m%d%H%M%S", "%d-%b-%Y %H:%M:%S", "%d-%b-%Y",
)


def _parse_time(column: pd.Series, time_format: str | None = None) -> tuple[pd.Series, str | None]:
    """Unix seconds (numbers or digit strings), ISO-8601 strings (no offset: taken as UTC), or one other
    layout (`time_format`, or the layout from TIME_LAYOUTS that reads most values) to UTC.

    Returns the times and the non-ISO layout used, if any. Unreadable or out-of-range values (e.g.
    milliseconds read as seconds) become NaT, so they are counted as bad timestamps, not guessed at."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return _nanoseconds(column.dt.tz_convert("UTC")), None
    if pd.api.types.is_datetime64_dtype(column.dtype):
        return _nanoseconds(column.dt.tz_localize("UTC")), None
    text = column.astype("str").str.strip()
    if time_format:
        layout_read = pd.to_datetime(text, utc=True, errors="coerce", format=time_format)
        return _nanoseconds(layout_read).where(column.notna()), time_format
    if pd.api.types.is_numeric_dtype(column.dtype):
        return _from_unix_seconds(column.astype("float64")), None
    numeric = pd.to_numeric(text, errors="coerce")
    is_number = numeric.notna().to_numpy()
    parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    layout = None
    if is_number.any():
        parsed[is_number] = _from_unix_seconds(numeric[is_number])
    if not is_number.all():
        rest = text[~is_number]
        iso = pd.to_datetime(rest, utc=True, errors="coerce", format="ISO8601")
        unread = iso.isna() & column[~is_number].notna()
        if unread.any():
            layout = _guess_layout(rest[unread])
            if layout is not None:
                iso[unread] = pd.to_datetime(rest[unread], utc=True, errors="coerce", format=layout)
        parsed[~is_number] = _nanoseconds(iso)
    return parsed.where(column.notna()), layout


def _guess_layout(text: pd.Series, sample: int = 5000) -> str | None:
    """The TIME_LAYOUTS entry that reads the most of a sample of distinct values (at least half)."""
    values = pd.Series(text.drop_duplicates().head(sample).to_numpy())
    best, best_read = None, len(values) / 2
    for layout in TIME_LAYOUTS:
        read = int(pd.to_datetime(values, errors="coerce", format=layout).notna().sum())
        if read > best_read:
            best, best_read = layout, read
    return best


_NS_RANGE = (pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))


def _from_unix_seconds(seconds: pd.Series) -> pd.Series:
    in_range = seconds.abs() < _NS_RANGE[1].timestamp()
    return _nanoseconds(pd.to_datetime(seconds.where(in_range), unit="s", utc=True))


def _nanoseconds(ts: pd.Series) -> pd.Series:
    """As datetime64[ns, UTC]; times outside its range (years 1677-2262) become NaT."""
    return ts.where((ts >= _NS_RANGE[0]) & (ts <= _NS_RANGE[1])).dt.as_unit("ns")


def load_sales(
    path: str | Path,
    *,
    item_col: str,
    time_col: str,
    quantity_col: str,
    sep: str = ",",
    time_format: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a sales file (one row per sale line) into `item_id`, `ts`, `quantity`.

    The same rules as `load_events`: rows with a missing item, unreadable time or non-numeric quantity
    are dropped and counted; negative quantities (returns, cancellations) are kept and noted, so that
    demand per period can net them out.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sales file at {path}")
    wanted = [item_col, time_col, quantity_col]
    if path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        _require_columns(wanted, pq.ParquetDataset(path).schema.names, path)
        raw, broken = pd.read_parquet(path, columns=wanted), 0
    else:
        _require_columns(wanted, pd.read_csv(path, sep=sep, nrows=0).columns, path)
        raw, broken = _read_text_table(path, sep=sep, columns=wanted)
    events, report = clean_events(
        raw, source=str(path), user_col=item_col, item_col=item_col, time_col=time_col,
        value_col=quantity_col, time_format=time_format,
    )  # fmt: skip
    report.add_unparsed(broken)
    sales = events[["item_id", "ts", "value"]].rename(columns={"value": "quantity"})
    return sales, report

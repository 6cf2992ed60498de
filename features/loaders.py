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
- Text files are read as they are published: plain, compressed (`.gz`, `.bz2`, `.zst`, by extension) or
  a zip of one file (an Excel workbook is refused); UTF-8 with or without a BOM, UTF-16 with a BOM or,
  when a byte is not UTF-8, Windows-1252, Latin-1, GBK or Big5 (`ENCODINGS`, noted); CRLF or LF line
  ends; blank lines skipped; the delimiter (`,`, tab, `;`, `|`) found from the header line unless given;
  in a `;` file, numbers with a decimal comma (`1.234,5`). A file without a header line names its
  columns by position, `#1`, `#2`, ... (1-based). Problems that make a file unreadable (empty, an
  unclosed quote, a column it lacks or names twice) raise `ValueError` naming the file (and row).
  docs/data-contracts.md has it all.
- `load_events` collapses rows identical in every column read when their times carry a time of day: one
  event logged twice. Date-only times (and `load_sales`, which reads too few columns to tell two stores'
  equal sale lines apart) keep them and count them in the notes.
"""

from __future__ import annotations

import csv as csv_module
import re
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
    sep: str | None = None,
    time_format: str | None = None,
    basket_col: str | None = None,
    time_offset_col: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a CSV or Parquet event file (or Parquet directory) with the given column names (`#N`
    positions for a text file without a header line; see the module docstring for the text rules).

    Time may be unix seconds (milliseconds or microseconds when a numbers-only column is that large),
    ISO-8601 strings, or another layout: `time_format` (strftime codes) or, without it, the common
    layout that reads most values (noted in the report). Ids are read as strings so leading zeros survive.
    `sep` is the CSV delimiter (default: found from the header line); a line with the wrong number of
    fields is counted and skipped. `time_offset_col` holds milliseconds added to each time (Diginetica:
    `timeframe`, since the session's start, on the date `eventdate`; its file is not in click order).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no event file at {path}")
    wanted = [
        c for c in (user_col, item_col, time_col, event_col, value_col, basket_col, time_offset_col) if c
    ]
    raw, broken, notes = _read_columns(
        path, wanted, sep, numbers=(value_col, time_offset_col), ids=(user_col, item_col, basket_col)
    )
    events, report = clean_events(
        raw, source=str(path), user_col=user_col, item_col=item_col, time_col=time_col,
        event_col=event_col, value_col=value_col, time_format=time_format, basket_col=basket_col,
        time_offset_col=time_offset_col,
    )  # fmt: skip
    report.add_unparsed(broken)
    report.notes.update(notes)
    return _collapse_repeats(events, report, timed=time_col is not None)


def load_order_lines(
    lines_path: str | Path,
    orders_path: str | Path,
    *,
    user_col: str,
    item_col: str,
    basket_col: str,
    time_col: str | None = None,
    value_col: str | None = None,
    time_format: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Order lines (basket, item[, value]) whose shopper and time are in a second file, one row per
    basket, joined on `basket_col`: Instacart's `order_products__prior.csv` beside `orders.csv`.

    The item and value columns are looked up in the lines file, the user and time columns in the orders
    file (the basket column is in both). A line whose basket is not in the orders file is dropped as a
    missing id; an orders file naming a basket twice is refused. Otherwise the rules of `load_events`.
    """
    lines_path, orders_path = Path(lines_path), Path(orders_path)
    for path in (lines_path, orders_path):
        if not path.exists():
            raise FileNotFoundError(f"no order file at {path}")
    line_columns = [basket_col, item_col, *([value_col] if value_col else [])]
    lines, broken, notes = _read_columns(
        lines_path, line_columns, None, numbers=(value_col,), ids=(basket_col, item_col)
    )
    order_columns = [basket_col, user_col, *([time_col] if time_col else [])]
    orders, orders_broken, orders_notes = _read_columns(
        orders_path, order_columns, None, ids=(basket_col, user_col)
    )
    key = _ids(orders[basket_col])
    orders, key = orders[key.notna().to_numpy()], key.dropna()
    twice = key.duplicated()
    if twice.any():
        raise ValueError(f"{orders_path}: basket {key[twice].iloc[0]!r} is named by more than one row")
    orders = orders.drop(columns=[basket_col]).set_index(key.to_numpy())
    joined = orders.reindex(_ids(lines[basket_col]).to_numpy())
    raw = pd.concat([lines.reset_index(drop=True), joined.reset_index(drop=True)], axis=1)
    events, report = clean_events(
        raw, source=str(lines_path), user_col=user_col, item_col=item_col, time_col=time_col,
        value_col=value_col, time_format=time_format, basket_col=basket_col,
    )  # fmt: skip
    report.add_unparsed(broken)
    if orders_broken:
        report.notes[f"{orders_path.name}: lines with a wrong number of fields (skipped)"] = orders_broken
    report.notes.update(notes)
    report.notes.update({f"{orders_path.name}: {what}": n for what, n in orders_notes.items()})
    return _collapse_repeats(events, report, timed=time_col is not None)


def _collapse_repeats(
    events: pd.DataFrame, report: LoadReport, *, timed: bool
) -> tuple[pd.DataFrame, LoadReport]:
    """Drop rows identical to an earlier one when the times have a time of day (one event logged twice);
    with dates only or no times, keep them (repeat purchases) and count them in the notes. Numbers
    below `DAY_NUMBERS_BELOW` read as seconds (dunnhumby's DAY) count days or orders: no time of day."""
    repeated = _repeated(events)
    if repeated.any():
        if timed and _has_time_of_day(events["ts"]):
            report.add_dropped("duplicate row", int(repeated.sum()))
            events = events[~repeated].reset_index(drop=True)
        else:
            report.notes["rows repeating an earlier row (kept)"] = int(repeated.sum())
    return events, report


def _has_time_of_day(ts: pd.Series) -> bool:
    """Whether some time falls between midnights and is no day number read as seconds."""
    clock = (ts != ts.dt.normalize()) & (ts >= pd.Timestamp(DAY_NUMBERS_BELOW, unit="s", tz="UTC"))
    return bool(clock.any())


def _repeated(events: pd.DataFrame) -> np.ndarray:
    """`events.duplicated()`, the columns' codes folded into one key a column at a time: pandas holds a
    code a row (8 bytes) for every column at once, at the peak of `load_sales`."""
    key, size = np.zeros(len(events), dtype=np.int64), 1
    for _, column in events.items():
        codes, uniques = pd.factorize(column)  # a missing value is -1, equal to another
        if size * (len(uniques) + 1) >= 2**62:  # the key would overflow: renumber it densely first
            key, distinct = pd.factorize(key)
            size = len(distinct)
        key *= len(uniques) + 1
        key += codes
        key += 1
        size *= len(uniques) + 1
        del codes  # before the next column's are made
    return pd.Series(key).duplicated().to_numpy()


def load_movielens(path: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """Read MovieLens ratings, the rating as `value`: `u.data` (100K: tab-separated user, item, rating,
    unix time), `ratings.dat` (1M, 10M: `user::item::rating::time`) or `ratings.csv` (20M, 25M, 32M,
    latest: header `userId,movieId,rating,timestamp`). The layout is read from the first line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MovieLens ratings file at {path}")
    source = _unpacked(path)
    head = _first_line(path, source)[0]
    if head.replace(" ", "").lower().startswith("userid,movieid,rating"):
        return load_events(
            path, user_col="userId", item_col="movieId", time_col="timestamp", value_col="rating", sep=","
        )
    names = ["user", "item", "rating", "ts"]
    if "::" in head:  # pyarrow reads one-character delimiters only; the ids and numbers never hold a tab
        with _open_text_bytes(path, source) as stream:
            source = _buffer(stream.read().replace(b"::", b"\t"))
    raw, broken, notes = _read_text_table(path, sep="\t", names=names, source=source)
    events, report = clean_events(
        raw, source=str(path), user_col="user", item_col="item", time_col="ts", value_col="rating"
    )
    report.add_unparsed(broken)
    report.notes.update(notes)
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
    time_offset_col: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and normalise an events frame; drop bad rows and count them by reason. A time column
    none of whose values reads (with ids beside them) is refused, naming one: a layout to give.

    `basket_col` (an order or transaction id) becomes the string column `basket_id`; `time_offset_col`
    (milliseconds) is added to the time once the times are checked, a row without a number there
    counted as a bad time offset."""
    report = LoadReport(source=source, rows_read=len(raw))
    user = _ids(raw[user_col])
    item = user if item_col == user_col else _ids(raw[item_col])
    bad = user.isna() | item.isna()
    report.add_dropped("missing id", int(bad.sum()))

    if time_col:
        ts, layout = _parse_time(raw[time_col], time_format)
        if layout is not None:
            report.notes[f"times read as {layout}"] = int(ts.notna().sum())
        bad_ts = ts.isna() & ~bad
        if bad_ts.any() and bad_ts.equals(~bad):
            first = raw[time_col].iloc[int(np.argmax(bad_ts.to_numpy()))]
            raise ValueError(
                f"{source}: no value of {time_col} reads as a time (the first: {str(first).strip()!r});"
                " give its layout with --time-format"
            )
        report.add_dropped("bad timestamp", int(bad_ts.sum()))
        bad |= bad_ts
        if time_offset_col:  # checked apart: a time that reads beside no offset is the offset's fault
            ts = ts + pd.to_timedelta(_numbers(raw[time_offset_col]), unit="ms")
            bad_offset = ts.isna() & ~bad
            report.add_dropped("bad time offset", int(bad_offset.sum()))
            bad |= bad_offset
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
        value = _numbers(raw[value_col]).astype("float64")
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
    keep = ~bad.to_numpy()
    # column by column and not consolidated: a frame's copy (and its filter's) costs it all again
    kept = {name: column.array if keep.all() else column.array[keep] for name, column in out.items()}
    events = pd.DataFrame(kept, copy=False)
    return events, report


def _read_columns(
    path: Path,
    wanted: list[str],
    sep: str | None,
    numbers: tuple[str | None, ...] = (),
    ids: tuple[str | None, ...] = (),
) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """The `wanted` columns of a Parquet file or directory, or of a delimited text file (as strings):
    `(frame, lines with a wrong field count, notes)`. Of a `;`-delimited file, the `numbers` columns
    written with decimal commas are read as such (`_decimal_comma`), as floats. Lines repeating the
    header are skipped and noted; the `ids` columns are checked for Excel's rounding
    (`_read_text_table`)."""
    wanted = list(dict.fromkeys(wanted))  # one column may serve twice (Ta-Feng: the day is the basket)
    by_position = [c for c in wanted if _position(c) is not None]
    if path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        if by_position:
            raise ValueError(f"{path}: columns by position ({by_position[0]}) are for headerless text files")
        _require_columns(wanted, pq.ParquetDataset(path).schema.names, path)
        return pd.read_parquet(path, columns=wanted), 0, {}
    if by_position and len(by_position) != len(wanted):
        raise ValueError(f"{path}: name every column or give every one by position (#N), not a mix")
    if sep is not None and len(sep) != 1:
        raise ValueError(f"the delimiter must be one character, got {sep!r}")
    source = _unpacked(path)
    head, blank_lines, encoding = _first_line(path, source, None if by_position else wanted)
    sep = sep or _find_delimiter(head, None if by_position else wanted)
    fields = [field.strip() for field in next(csv_module.reader([head], delimiter=sep))]
    read = dict(
        sep=sep,
        columns=wanted,
        source=source,
        encoding=encoding,
        ids=tuple(dict.fromkeys(c for c in ids if c)),
    )
    if by_position:
        names = [f"#{n}" for n in range(1, len(fields) + 1)]
        beyond = [c for c in wanted if _position(c) > len(fields)]
        if beyond:
            raise ValueError(f"{path} has {len(fields)} fields a line (delimiter {sep!r}): no {beyond[0]}")
        frame, broken, notes = _read_text_table(path, names=names, skip_rows=blank_lines, **read)
    else:
        _require_columns(wanted, fields, path)
        twice = [c for c in wanted if fields.count(c) > 1]
        if twice:
            raise ValueError(f"{path}: the header names column {twice[0]!r} more than once")
        frame, broken, notes = _read_text_table(path, names=fields, skip_rows=blank_lines + 1, **read)
        header = _header_lines(frame)
        if header is not None:
            frame = frame[~header].reset_index(drop=True)
            notes["header line repeated (skipped)"] = int(header.sum())
    for column in dict.fromkeys(c for c in numbers if c and sep == ";"):
        read_with_commas = _decimal_comma(frame[column])
        if read_with_commas is not None:
            frame[column] = read_with_commas
            notes[f"{column} read with decimal commas"] = int(read_with_commas.notna().sum())
    return frame, broken, notes


def read_table(path: str | Path, dtype: dict[str, str] | None = None) -> pd.DataFrame:
    """A whole delimited text file (a campaign file, a calendar, an experiment's event log) as pandas
    reads it (`dtype` as in `pandas.read_csv`), under the text rules of the module docstring
    (compressed, BOM, blank lines, delimiter found from the header line, Windows-1252 or Latin-1 when
    not UTF-8; names and fields stripped; in a `;` file, a column of numbers with decimal commas read
    as numbers). A first column with no name holding 0..n-1, pandas' index saved by `to_csv`, is left
    out (a campaign's model learnt the row number). An empty or unparsable file is a `ValueError`
    naming it (and, from pandas, the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    source = _unpacked(path)
    head, _, encoding = _first_line(path, source)
    sep = _find_delimiter(head, None)
    read = dict(sep=sep, skipinitialspace=True, dtype=dtype)

    def parse(encoding: str) -> pd.DataFrame:
        # decompressed by pyarrow, as the other readers do (pandas wants zstandard for .zst)
        with _open_text_bytes(path, source) as stream:
            return pd.read_csv(stream, encoding="utf-8-sig" if encoding == "utf8" else encoding, **read)

    try:
        frame = _first_that_decodes(parse, encoding)[0]
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path}: {str(exc).strip().splitlines()[-1]}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame.columns) and frame.columns[0] == "Unnamed: 0" and _is_row_number(frame.iloc[:, 0]):
        frame = frame.iloc[:, 1:]  # pandas' index, written by to_csv: a row number, no data
    for column in frame.select_dtypes("object").columns:  # mixed columns keep their non-text values
        frame[column] = frame[column].map(lambda v: v.strip() if isinstance(v, str) else v)
        numbers = _decimal_comma(frame[column]) if sep == ";" else None
        if numbers is not None and numbers.notna().sum() == frame[column].notna().sum():
            frame[column] = numbers
    return frame


def _header_lines(frame: pd.DataFrame) -> np.ndarray | None:
    """Rows whose every column holds its own name, a header line repeated (files joined with `cat`),
    or None when there is none. Compared on each column's distinct values first."""
    names = {}
    for name, column in frame.items():
        hits = np.flatnonzero(column.cat.categories.to_numpy() == name)
        if not len(hits):
            return None
        names[name] = hits
    rows = np.ones(len(frame), dtype=bool)
    for name, hits in names.items():
        rows &= np.isin(frame[name].cat.codes.to_numpy(), hits)
    return rows if rows.any() else None


def _is_row_number(column: pd.Series) -> bool:
    """Whether a column holds exactly 0, 1, ..., n - 1 in order."""
    return pd.api.types.is_integer_dtype(column) and bool((column.to_numpy() == np.arange(len(column))).all())


def _first_that_decodes(read, encoding: str | None):
    """`(read(encoding), encoding)` for the header's encoding (None: UTF-8) or, while a byte does not
    decode, the next of `FALLBACK_ENCODINGS`."""
    import pyarrow as pa

    first = encoding or "utf8"
    tried = FALLBACK_ENCODINGS[FALLBACK_ENCODINGS.index(first) :] if first in FALLBACK_ENCODINGS else (first,)
    for n, attempt in enumerate(tried):
        try:
            return read(attempt), attempt
        except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
            undecoded = (
                isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc) or "utf-8" in str(exc).lower()
            )
            if not undecoded or n == len(tried) - 1:
                raise


def _position(column: str) -> int | None:
    """N for a column given as `#N` (1-based), else None."""
    if column.startswith("#") and column[1:].isdigit() and int(column[1:]) >= 1:
        return int(column[1:])
    return None


DELIMITERS = (",", "\t", ";", "|")


def _splits(head: str) -> dict[str, list[str]]:
    """The header line's stripped fields split by each of `DELIMITERS`."""
    return {sep: [f.strip() for f in next(csv_module.reader([head], delimiter=sep))] for sep in DELIMITERS}


def _find_delimiter(head: str, wanted: list[str] | None) -> str:
    """The delimiter whose split of the header line holds every wanted column name or, for a headerless
    file (`wanted` None) or when none does, the one that splits the line into the most fields."""
    splits = _splits(head)
    if wanted:
        for sep, fields in splits.items():
            if set(wanted) <= set(fields):
                return sep
    return max(DELIMITERS, key=lambda sep: len(splits[sep]))  # ties: the earlier, "," first


def _unpacked(path: Path):
    """The one file of a zip archive (Kaggle's downloads) or a UTF-16 file (compressed or not), in memory
    as UTF-8, or None for other files (plain or .gz/.bz2/.zst, which pyarrow streams). Excel workbooks
    and archives of several files are refused by name."""
    import zipfile

    with open(path, "rb") as file:
        magic = file.read(8)
    if magic == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise ValueError(f"{path} is an Excel workbook: save it as CSV first")
    if not zipfile.is_zipfile(path):
        with _open_text_bytes(path) as stream:  # decompressed: a .gz holds the BOM inside
            start = stream.read(2)
            return _buffer(_as_utf8(start + stream.read())) if start in UTF16_BOMS else None
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
        if "[Content_Types].xml" in names or any(n.startswith("xl/") for n in names):
            sheets = _sheet_names(archive.read("xl/workbook.xml")) if "xl/workbook.xml" in names else []
            if len(sheets) > 1:
                raise ValueError(
                    f"{path} is an Excel workbook of {len(sheets)} sheets ({', '.join(map(repr, sheets))}):"
                    " save each as CSV (Excel saves only the sheet shown) and put their rows in one file"
                )
            raise ValueError(f"{path} is an Excel workbook: save it as CSV first")
        if len(names) != 1:
            raise ValueError(f"{path} is a zip archive of {len(names)} files: unzip it and name one")
        return _buffer(_as_utf8(archive.read(names[0])))


def _sheet_names(workbook_xml: bytes) -> list[str]:
    """The sheet names of an .xlsx's `xl/workbook.xml` (UCI's online_retail_II.xlsx: a year each)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(workbook_xml)
    except ElementTree.ParseError:
        return []
    return [sheet.get("name", "") for sheet in root.iter() if str(sheet.tag).rsplit("}", 1)[-1] == "sheet"]


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _as_utf8(data: bytes) -> bytes:
    """UTF-16 with a BOM (Excel's "Unicode text" export) as UTF-8; other bytes as they are."""
    return data.decode("utf-16").encode("utf-8") if data[:2] in UTF16_BOMS else data


def _open_text_bytes(path: Path, source=None):
    """A binary stream of the file's bytes: `source` (an unpacked archive member) from its start, or
    the file decompressed by its extension (.gz, .bz2, .zst, ...)."""
    import pyarrow as pa

    if source is not None:
        source.seek(0)
        return pa.BufferReader(source.read_buffer())
    return pa.input_stream(str(path), compression="detect")


def _buffer(data: bytes):
    import pyarrow as pa

    return pa.BufferReader(data)


def _first_line(path: Path, source=None, wanted: list[str] | None = None) -> tuple[str, int, str | None]:
    """The first non-blank line (BOM and line end removed), the number of blank lines before it and,
    when the line is not UTF-8, the encoding it is read in (`_legacy_encoding`). An empty file is
    refused by name."""
    with _open_text_bytes(path, source) as stream:
        chunk = stream.read(1 << 20)
    lines = chunk.splitlines()
    blank = 0
    for line in lines:
        if line.strip():
            try:
                return line.decode("utf-8-sig"), blank, None
            except UnicodeDecodeError:
                encoding = _legacy_encoding(line, wanted)
                return line.decode(encoding), blank, encoding
        blank += 1
    raise ValueError(f"{path} is empty (no header or data line)")


ENCODINGS = {
    "utf8": "UTF-8",
    "cp1252": "Windows-1252",
    "gb18030": "GBK",
    "big5": "Big5",
    "latin-1": "Latin-1",
}
"""The encodings a text file is read in, with the names the notes give them. A file that is not UTF-8
is read as Windows-1252 (Excel's "CSV" on Windows: ’ – € are bytes Latin-1 reads as control characters)
or, for the bytes that leaves undefined, Latin-1 (which reads any byte); as GBK (GB18030, mainland
China) or Big5 (Taiwan) only when the column names asked for are in its header so read."""

FALLBACK_ENCODINGS = ("utf8", "cp1252", "latin-1")
"""Each tried in turn, from the header's encoding on, while a byte of the file does not decode."""


def _legacy_encoding(line: bytes, wanted: list[str] | None) -> str:
    """The encoding of a header line that is not UTF-8: the first of Windows-1252, GBK, Big5 in which it
    holds every wanted column name (GBK decodes Big5's bytes too, as other characters: the names
    tell them apart), else Windows-1252 or, when a byte is undefined there, Latin-1."""
    for encoding in ("cp1252", "gb18030", "big5"):
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError:
            continue
        if wanted and any(set(wanted) <= set(fields) for fields in _splits(text).values()):
            return encoding
    try:
        line.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def _read_csv_decoded(
    path: Path,
    source,
    encoding: str | None,
    *,
    sep: str,
    names: list[str],
    skip_rows: int,
    convert_options,
    refuse_overrun: bool = False,
):
    """`path` (or `source`, its unpacked bytes) read by pyarrow's CSV reader in the header's `encoding`
    (None: UTF-8) or the next that decodes every byte (`_first_that_decodes`): `(table, lines with a
    wrong field count (skipped), notes)`, noting an encoding other than UTF-8. A byte the header's
    encoding does not decode or a pyarrow error is a `ValueError` naming the file; so, with
    `refuse_overrun`, is a row running over a line end (an unclosed quote swallows the rest of the file),
    else skipped and counted as the other broken lines."""
    import pyarrow as pa
    from pyarrow import csv

    broken = 0
    overrun: list[str] = []

    def skip_and_count(row) -> str:
        nonlocal broken
        if refuse_overrun and ("\n" in row.text or "\r" in row.text):  # a quote left open
            overrun.append(row.text.splitlines()[0][:60])
            return "error"
        broken += 1
        return "skip"

    def read(encoding: str) -> pa.Table:
        nonlocal broken
        broken = 0
        if source is not None:
            source.seek(0)
        return csv.read_csv(
            source if source is not None else path,
            read_options=csv.ReadOptions(column_names=names, skip_rows=skip_rows, encoding=encoding),
            parse_options=csv.ParseOptions(delimiter=sep, invalid_row_handler=skip_and_count),
            convert_options=convert_options,
        )

    try:
        table, encoding = _first_that_decodes(read, encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not {ENCODINGS[encoding]} throughout, as its header is ({exc})") from None
    except pa.ArrowInvalid as exc:
        if overrun:
            raise ValueError(
                f"{path}: the row starting {overrun[0]!r} runs over a line end (an unclosed quote?)"
            ) from None
        raise ValueError(f"{path}: {str(exc).splitlines()[0]}") from None
    notes = {f"file read as {ENCODINGS[encoding]} (not UTF-8)": table.num_rows} if encoding != "utf8" else {}
    return table, broken, notes


def _read_text_table(
    path: Path,
    *,
    sep: str,
    names: list[str],
    columns: list[str] | None = None,
    skip_rows: int = 0,
    source=None,
    encoding: str | None = None,
    ids: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, int, dict[str, int]]:
    """Read a delimited text file (or `source`, its bytes) as strings with pyarrow (fast), each column
    a category (its distinct strings once and a small code a row: ids and dates repeat, and a Python
    string a row costs ~60 bytes): `(frame, lines with a wrong field count, notes)`. In the header's
    `encoding` (None: UTF-8), or the next that decodes every byte (`_read_csv_decoded`), noted when
    not UTF-8. A pyarrow error, a byte the header's encoding does not decode, a field running over a
    line end (an unclosed quote swallows the rest of the file) or, in an `ids` column, ids in scientific
    notation (Excel rounded them: different ids read as one, every score silently wrong) is a
    `ValueError` naming the file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    columns = columns or names
    table, broken, notes = _read_csv_decoded(
        path,
        source,
        encoding,
        sep=sep,
        names=names,
        skip_rows=skip_rows,
        convert_options=csv.ConvertOptions(
            include_columns=columns,
            column_types=dict.fromkeys(columns, pa.dictionary(pa.int32(), pa.string())),
            strings_can_be_null=False,
        ),
        refuse_overrun=True,
    )
    for column in columns:  # on each block's distinct values, in pyarrow
        start = 0
        for block in table[column].chunks:
            multiline = pc.match_substring(block.dictionary, "\n").to_numpy(zero_copy_only=False)
            if multiline.any():
                row = start + int(np.argmax(np.isin(block.indices.to_numpy(), np.flatnonzero(multiline))))
                raise ValueError(
                    f"{path}: data row {row + 1}, column {column}: a field runs over a line end"
                    " (an unclosed quote?)"
                )
            start += len(block)
    for column in ids:
        rows, first = _rounded_ids(table[column])
        if rows:
            raise ValueError(
                f"{path}: {rows} {column} values are in scientific notation (the first: {first!r}):"
                " Excel rounded the ids, so different ones read alike; export the column as text"
            )
    frame = pd.DataFrame({column: _as_category(table[column]) for column in columns})
    del table
    pa.default_memory_pool().release_unused()  # the file's text, kept by pyarrow's allocator otherwise
    return frame, broken, notes


def _as_category(column) -> pd.Categorical:
    """A pyarrow column of dictionary blocks as one category (pyarrow's `to_pandas` merges the blocks'
    dictionaries at a cost above a string a row when values rarely repeat, as times in milliseconds)."""
    import pyarrow as pa

    column = pa.table({"column": column}).unify_dictionaries()["column"]
    if not column.num_chunks:
        return pd.Categorical([])
    codes = np.concatenate([block.indices.to_numpy() for block in column.chunks])
    categories = column.chunk(0).dictionary.to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(codes, categories=categories, validate=False)


def _require_columns(wanted: list[str], available, path: Path) -> None:
    available = list(available)
    missing = [c for c in wanted if c not in set(available)]
    if missing:
        shown = ", ".join(map(str, available[:12]))
        if len(available) > 12:
            shown += f", ... ({len(available) - 12} more)"
        hint = ""
        if sum(bool(re.fullmatch(r"d_\d+|\d{4}-\d{2}-\d{2}", str(c))) for c in available) > 12:
            hint = (
                "; it is wide (a column per day, like M5's d_1..): evaluate forecast reads it with"
                " --first-day DATE, else melt it to one row per item and day"
            )
        raise ValueError(f"{path} has no column(s) {missing}; it has {shown}{hint}")


def _ids(column: pd.Series) -> pd.Series:
    """Ids as stripped strings; blanks become missing. A category's rows share its one string object."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return _per_row(_ids(pd.Series(column.cat.categories)), column)
    text = column.astype("str").str.strip()
    return text.where(column.notna() & (text != ""))


ROUNDED_ID = r"^\s*[1-9](?:\.\d+)?[Ee]\+\d{2,}\s*$"
"""An id Excel turned into a number and wrote in scientific notation (`4.71009E+12`: six digits of a
13-digit product code), or a float wrote so (`1.8446744073709552e+19`)."""


def _rounded_ids(column) -> tuple[int, str | None]:
    """The rows of a pyarrow column of dictionary blocks holding an id in scientific notation
    (`ROUNDED_ID`), and the first such id: found on each block's distinct values, without a copy."""
    import pyarrow.compute as pc

    rows, first = 0, None
    for block in column.chunks:
        hits = pc.match_substring_regex(block.dictionary, ROUNDED_ID).to_numpy(zero_copy_only=False)
        if hits.any():
            rounded = np.isin(block.indices.to_numpy(), np.flatnonzero(hits))
            rows += int(rounded.sum())
            first = first or block.dictionary[block.indices[int(np.argmax(rounded))].as_py()].as_py()
    return rows, first


GROUPED_THOUSANDS = r"[1-9]\d{0,2}(?:\.\d{3})+"  # 1.234 and 12.000.000, never 0.125


def _decimal_comma(column: pd.Series) -> pd.Series | None:
    """Numbers as a European Excel export writes them, in a `;`-delimited file (`2,5`, `1.234,5`: a
    decimal comma, dots grouping thousands), or None when no value has a decimal comma. Other values as
    `_numbers` reads them. Only for `;` files: a `,` file's quoted "1,234" groups thousands. A value
    with dots and no comma groups thousands only when every such value of the column is so shaped:
    `0.125` or `2.5` beside `1,5` makes the column's dots decimal points (`0.125` was read as 125 and
    `1.250` beside `2.5` as 1250)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        read = _decimal_comma(pd.Series(column.cat.categories))
        return None if read is None else _per_row(read, column)
    text = column.astype("str").str.strip()
    comma = text.str.fullmatch(rf"[+-]?(?:{GROUPED_THOUSANDS}|\d*),\d+")
    if not comma.any():
        return None
    dots = text.str.contains(".", regex=False) & ~comma
    dots_group = text.str.fullmatch(rf"[+-]?{GROUPED_THOUSANDS}")
    grouped = comma | dots_group if dots_group[dots].all() else comma
    european = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(text.where(~grouped, european), errors="coerce").where(column.notna())


def _numbers(column: pd.Series) -> pd.Series:
    """`pd.to_numeric(column, errors="coerce")`, on a category's distinct values once."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return _per_row(_numbers(pd.Series(column.cat.categories)), column)
    return pd.to_numeric(column, errors="coerce")


def _per_row(values: pd.Series, column: pd.Series) -> pd.Series:
    """`values`, one per category of `column`, spread to its rows (a missing row: missing)."""
    return pd.Series(values.array.take(column.cat.codes.to_numpy(), allow_fill=True), index=column.index)


def _in_order_seen(column: pd.Series) -> pd.Series:
    """A categorical column with its categories in the order their rows first appear."""
    codes = column.cat.codes.to_numpy()
    seen = pd.unique(codes)
    seen = seen[seen >= 0]
    rank = np.full(len(column.cat.categories), -1, dtype=codes.dtype)
    rank[seen] = np.arange(len(seen))
    reordered = pd.Categorical.from_codes(rank[codes], categories=column.cat.categories[seen])
    return pd.Series(reordered, index=column.index)


# Layouts seen in exported shop data; month-first comes before day-first, so a column where both read
# every value (all days <= 12) is taken as month-first, the layout of US exports such as UCI Online Retail.
TIME_LAYOUTS = (
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%m/%d/%Y %I:%M:%S %p",  # .NET and SQL Server, en-US: 12/1/2010 8:26:00 AM
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%y %H:%M",  # Excel's m/d/yy h:mm; two-digit years are 1969-2068
    "%m/%d/%y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%d/%m/%y %H:%M",
    "%d/%m/%y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y",  # Walmart_Store_sales.csv: 05-02-2010 is 5 February
    "%m-%d-%Y %H:%M",  # month first with dashes: chosen when it reads more values than day first
    "%m-%d-%Y %H:%M:%S",
    "%m-%d-%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y%m%d%H%M%S",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%Y",
    "%d-%b-%y",  # Oracle's default: 01-DEC-10
)


def _parse_time(
    column: pd.Series, time_format: str | None = None, counts: np.ndarray | None = None
) -> tuple[pd.Series, str | None]:
    """Unix times (numbers or digit strings), ISO-8601 strings (no offset: taken as UTC; a trailing
    ` UTC` or `Z` is an offset), or one other layout (`time_format`, or the layout from TIME_LAYOUTS that
    reads most values) to UTC.

    Unix times are seconds, except in a column of numbers only (empty cells aside) whose median is too
    large for seconds: milliseconds (RetailRocket) or microseconds by its size (`UNIX_UNITS`). Returns
    the times and the layout or unit used when it is not ISO or seconds. Unreadable or out-of-range
    values (e.g. a millisecond value among seconds) become NaT, so they are counted as bad timestamps,
    not guessed at.

    A category's distinct values are parsed once, in the order their rows first appear (the layout is
    guessed from the first ones), `counts` holding their rows (they weigh the median)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = _in_order_seen(column)
        codes = column.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(column.cat.categories))
        parsed, layout = _parse_time(pd.Series(column.cat.categories), time_format, counts)
        return _per_row(parsed, column), layout
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return _nanoseconds(column.dt.tz_convert("UTC")), None
    if pd.api.types.is_datetime64_dtype(column.dtype):
        return _nanoseconds(column.dt.tz_localize("UTC")), None
    text = column.astype("str").str.strip()
    if time_format:
        layout_read = pd.to_datetime(text, utc=True, errors="coerce", format=time_format)
        return _nanoseconds(layout_read).where(column.notna()), time_format
    if pd.api.types.is_numeric_dtype(column.dtype):
        return _from_unix(column.astype("float64"), all_numbers=True)
    numeric = pd.to_numeric(text, errors="coerce")
    is_number = numeric.notna().to_numpy()
    blank = column.isna().to_numpy() | (text == "").to_numpy()  # a missing time: NaT, says nothing of units
    parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    layout = None
    if is_number.any():
        only_numbers = bool((is_number | blank).all())
        parsed[is_number], layout = _from_unix(
            numeric[is_number], all_numbers=only_numbers, counts=None if counts is None else counts[is_number]
        )
    if not is_number.all():
        rest = text[~is_number]
        iso = pd.to_datetime(
            rest.str.replace(r"\s+(?:UTC|GMT)$", "Z", regex=True), utc=True, errors="coerce", format="ISO8601"
        )
        unread = iso.isna() & ~blank[~is_number]
        if unread.any():
            layout = _guess_layout(rest[unread])
            if layout is not None:
                iso[unread] = pd.to_datetime(rest[unread], utc=True, errors="coerce", format=layout)
        parsed[~is_number] = _nanoseconds(iso)
    return parsed.where(column.notna()), layout


def read_times(values: pd.Series) -> pd.Series:
    """Times by the event files' rule (`_parse_time`: one layout for all the values, the one that reads
    the most), in UTC; unreadable: NaT."""
    return _parse_time(values)[0]


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


UNIX_UNITS = (("seconds", "s", 1e11), ("milliseconds", "ms", 1e14), ("microseconds", "us", 1e17))
"""(unit, pandas code, bound): a unix time whose size is below the bound, and at least the previous
unit's bound, is in that unit (1e11 seconds and 1e14 milliseconds are both the year 5138)."""


def _from_unix(
    values: pd.Series, *, all_numbers: bool, counts: np.ndarray | None = None
) -> tuple[pd.Series, str | None]:
    """Unix times to UTC, and the unit's name when not seconds. The unit is seconds unless the column
    holds numbers only and its median size (a value weighing its `counts` of rows, when given) is past
    seconds' bound; values outside the unit's size band (a seconds value among milliseconds) become NaT."""
    size = values.abs()
    low, (unit, code, high) = 0.0, UNIX_UNITS[0]
    if all_numbers and len(values):
        median = size.median() if counts is None else _weighted_median(size.to_numpy(), counts)
        for lower, (name, name_code, bound) in zip((0.0, 1e11, 1e14), UNIX_UNITS, strict=True):
            if median < bound:
                low, unit, code, high = lower, name, name_code, bound
                break
    per_second = {"s": 1.0, "ms": 1e3, "us": 1e6}[code]
    valid = (size >= low) & (size < high) & (size / per_second < _NS_RANGE[1].timestamp())
    if code == "s":  # fractional seconds are common ("1433221332.117")
        parsed = pd.to_datetime(values.where(valid), unit="s", utc=True)
    else:  # whole units as integers: through float64 they would be off by up to 256 ns
        whole = values.where(valid, 0).round().astype("int64")
        parsed = pd.to_datetime(whole, unit=code, utc=True).where(valid)
    return _nanoseconds(parsed), None if code == "s" else f"unix {unit}"


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """The median of `values`, each repeated `counts` times (without repeating them)."""
    order = np.argsort(values, kind="stable")
    rows = np.cumsum(counts[order])
    middle = np.searchsorted(rows, [(rows[-1] - 1) // 2, rows[-1] // 2], side="right")
    return float(values[order][middle].mean())


def _nanoseconds(ts: pd.Series) -> pd.Series:
    """As datetime64[ns, UTC]; times outside its range (years 1677-2262) become NaT."""
    return ts.where((ts >= _NS_RANGE[0]) & (ts <= _NS_RANGE[1])).dt.as_unit("ns")


DAY_NUMBERS_BELOW = 1e6
"""Unix seconds below this fall in 1970's first 12 days, when no shop log begins: a time column of such
numbers counts days (dunnhumby's DAY) or orders (Instacart's order_number); they order, they do not date."""


def _first_day(first_day: str) -> pd.Timestamp:
    """The date of day 1 of a day-numbered file, in UTC."""
    start = pd.Timestamp(first_day)
    return start.tz_convert("UTC") if start.tz else start.tz_localize("UTC")


def load_sales(
    path: str | Path,
    *,
    item_col: str,
    time_col: str,
    quantity_col: str,
    sep: str | None = None,
    time_format: str | None = None,
    first_day: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a sales file (one row per sale line) into `item_id`, `ts`, `quantity`.

    The same rules as `load_events`: rows with a missing item, unreadable time or non-numeric quantity
    are dropped and counted; negative quantities (returns, cancellations) are kept and noted, so that
    demand per period can net them out. Identical rows are kept (two stores' equal sales of one item on
    one day look the same once the store is not read) and counted in the notes.

    With `first_day`, the time column counts days (dunnhumby's DAY): day N is `first_day` + N - 1, as
    in `load_wide_sales`. Without it, times that are small numbers (below `DAY_NUMBERS_BELOW`) are
    refused: read as unix seconds, a file's days would all fall in 1970's first days.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sales file at {path}")
    raw, broken, notes = _read_columns(
        path, [item_col, time_col, quantity_col], sep, numbers=(quantity_col,), ids=(item_col,)
    )
    if first_day is not None:
        days = _numbers(raw[time_col])
        whole = days.where(days == days.round())
        if len(raw) and whole.isna().all():
            raise ValueError(
                f"{path}: no value of {time_col} is a whole day number for --first-day "
                f"(the first: {str(raw[time_col].iloc[0]).strip()!r})"
            )
        raw[time_col] = _first_day(first_day) + pd.to_timedelta(whole - 1, unit="D")
    events, report = clean_events(
        raw, source=str(path), user_col=item_col, item_col=item_col, time_col=time_col,
        value_col=quantity_col, time_format=time_format,
    )  # fmt: skip
    report.add_unparsed(broken)
    report.notes.update(notes)
    if (
        first_day is None
        and len(events)
        and events["ts"].max() < pd.Timestamp(DAY_NUMBERS_BELOW, unit="s", tz="UTC")
    ):
        seconds = events["ts"].astype("int64") / 1e9
        raise ValueError(
            f"{path}: {time_col} holds small numbers ({seconds.min():g} to {seconds.max():g}), not times:"
            " if it counts days, give the date of day 1 (--first-day DATE)"
        )
    sales = pd.DataFrame(
        {"item_id": events["item_id"], "ts": events["ts"], "quantity": events["value"]}, copy=False
    )
    del events  # its user_id is the item_id: one column fewer for the repeats' count
    return _collapse_repeats(sales, report, timed=False)  # kept, and counted in the notes


def load_wide_sales(
    path: str | Path, *, item_col: str, first_day: str, sep: str | None = None
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a wide sales table, one row per series and one column per day (M5's `d_1..d_1941`; d_1 is
    `first_day`), into the `item_id` (categorical), `ts`, `quantity` rows of `load_sales`, summed per
    item and day.

    Rows with a missing item are dropped and counted; an empty or non-numeric cell is a `ValueError`
    naming the file (M5 has none: a gap would be silently read as no sales otherwise)."""
    import pyarrow as pa
    from pyarrow import csv

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sales file at {path}")
    start = _first_day(first_day)
    source = _unpacked(path)
    head, blank_lines, encoding = _first_line(path, source, [item_col])
    sep = sep or _find_delimiter(head, [item_col])
    fields = [field.strip() for field in next(csv_module.reader([head], delimiter=sep))]
    _require_columns([item_col], fields, path)
    days = [f for f in fields if re.fullmatch(r"d_[1-9]\d*", f)]
    if not days:
        raise ValueError(f"{path} has no day columns d_1, d_2, ...: not a wide sales table")
    table, broken, notes = _read_csv_decoded(
        path,
        source,
        encoding,
        sep=sep,
        names=fields,
        skip_rows=blank_lines + 1,
        convert_options=csv.ConvertOptions(
            include_columns=[item_col, *days],
            column_types={item_col: pa.string(), **dict.fromkeys(days, pa.float64())},
        ),
        refuse_overrun=True,  # an open quote would swallow every item after it
    )
    report = LoadReport(source=str(path), rows_read=table.num_rows, notes=notes)
    report.add_unparsed(broken)
    gaps = [d for d in days if table[d].null_count]
    if gaps:
        raise ValueError(f"{path}: column {gaps[0]} has {table[gaps[0]].null_count} empty cells")
    items = _ids(table[item_col].to_pandas())
    report.add_dropped("missing id", int(items.isna().sum()))
    values = np.column_stack([table[d].to_numpy() for d in days])[items.notna().to_numpy()]
    per_item = pd.DataFrame(values, index=items.dropna().to_numpy()).groupby(level=0, sort=True).sum()
    dates = (start + pd.to_timedelta([int(d[2:]) - 1 for d in days], unit="D")).as_unit("ns")
    report.notes[f"wide table: {len(days)} day columns from {start.date()}"] = len(per_item)
    n_items = len(per_item)
    # A row per item and day (M5 by store: 59M): the item as a category, not a string per row (80 bytes)
    sales = pd.DataFrame(
        {
            "item_id": pd.Categorical.from_codes(
                np.repeat(np.arange(n_items, dtype=np.int32), len(days)), categories=per_item.index
            ),
            "ts": pd.DatetimeIndex(np.tile(dates.asi8, n_items), tz="UTC").as_unit("ns"),
            "quantity": per_item.to_numpy().ravel(),
        }
    )
    return sales, report

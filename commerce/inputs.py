"""The input Parquet files of a generated marketplace (docs/data-contracts.md) checked before a command
uses them, so a file it cannot use ends the command with one line naming the file and what is wrong
(`crosscart.cli`) instead of a traceback from wherever the reader tripped (a KeyError for a renamed
column, a TypeError for a `ts` stored as text, pyarrow's "Corrupt snappy compressed data" naming no file).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: How pyarrow starts the message for an input that is not a whole Parquet file (empty, cut short, not
#: Parquet); the message goes on with the file's path.
UNREADABLE_PARQUET = "Could not open Parquet input source"

#: The directory of event parts; its columns are the schema every writer of it uses
#: (`commerce.events.events_arrow_schema`), so they are read from there (`contract_columns`).
EVENTS = "events"

#: The columns of each other marketplace file and their kind, as the contract states them. Every reader
#: of these files relies on them, so each is required.
MARKETPLACE: dict[str, dict[str, str]] = {
    "categories.parquet": {
        "category_id": "text",
        "parent_id": "text",
        "name": "text",
        "vat_rate": "number",
        "consumption_tax_rate": "number",
        "commission_rate": "number",
        "repurchasable": "flag",
    },
    "merchants.parquet": {
        "merchant_id": "text",
        "name": "text",
        "country": "text",
        "licence_no": "text",
        "brands": "list",
        "status": "text",
        "created_at": "timestamp",
    },
    "products.parquet": {
        "product_id": "text",
        "sku": "text",
        "merchant_id": "text",
        "title": "text",
        "category_id": "text",
        "brand": "text",
        "origin_country": "text",
        "price": "number",
        "fulfillment": "text",
        "self_operated": "flag",
        "stock": "number",
        "status": "text",
        "created_at": "timestamp",
    },
    "shoppers.parquet": {
        "shopper_id": "text",
        "region": "text",
        "segment": "text",
        "created_at": "timestamp",
    },
    "identities.parquet": {"shopper_id": "text", "real_name": "text", "id_number": "text"},
    "seasons.parquet": {
        "season_id": "text",
        "name": "text",
        "start": "timestamp",
        "end": "timestamp",
        "discount": "number",
    },
    "campaigns.parquet": {
        "campaign_id": "text",
        "name": "text",
        "channel": "text",
        "start": "timestamp",
        "end": "timestamp",
        "control_share": "number",
    },
    "coupons.parquet": {
        "coupon_id": "text",
        "campaign_id": "text",
        "kind": "text",
        "value": "number",
        "cap": "number",
        "min_spend": "number",
        "scope_type": "text",
        "scope_id": "text",
    },
    "assignments.parquet": {
        "campaign_id": "text",
        "shopper_id": "text",
        "arm": "text",
        "converted": "flag",
        "spend": "number",
        "redeemed": "flag",
    },
    "product_parcels.parquet": {"product_id": "text", "weight_g": "number", "volume_cm3": "number"},
}


class BadInputFile(ValueError):
    """An input file a command cannot use: not a whole Parquet file, data that does not decode, or a
    column missing or of another kind than the contract's."""

    def __init__(self, path: Path, problem: str):
        # one line whatever the reader said: pyarrow's messages run over several ("Couldn't deserialize
        # thrift: ...\nDeserializing page header failed."), and the command prints one `error:` line
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", f"{path}: {problem}").strip())
        self.path = path


def is_unreadable_input(exc: BaseException) -> bool:
    """Whether `exc` is an input file a command cannot use (BadInputFile, or pyarrow refusing to open a
    file that is not whole Parquet, which names it), as opposed to a bug."""
    return isinstance(exc, BadInputFile) or (
        isinstance(exc, ValueError) and str(exc).startswith(UNREADABLE_PARQUET)
    )


def _kind(type_) -> str:
    import pyarrow as pa

    for kind, test in (
        ("timestamp", pa.types.is_timestamp),
        ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        ("number", lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)),
        ("flag", pa.types.is_boolean),
        ("list", lambda t: pa.types.is_list(t) or pa.types.is_large_list(t)),
    ):
        if test(type_):
            return kind
    return str(type_)


def check_file(path: Path, columns: dict[str, str], *, decode: bool = True, whole: bool = False) -> None:
    """Raise BadInputFile unless `path` opens as Parquet and holds `columns` ({name: kind}) of their kind
    (a column of nulls only fits any kind); with `decode`, unless those columns' pages also decode (read
    one row group at a time: a damaged page behind an intact footer); with `whole`, every column's pages
    (a file its reader reads whole, as the labels of a training set)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise BadInputFile(path, f"not a whole Parquet file ({str(exc).strip()})") from exc
    for name, kind in columns.items():
        if name not in schema.names:
            raise BadInputFile(path, f"missing column {name}")
        type_ = schema.field(name).type
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        if not pa.types.is_null(type_) and _kind(type_) != kind:
            raise BadInputFile(path, f"column {name} is {type_}, not {kind}")
    if decode or whole:
        try:
            for group in range(parquet.num_row_groups):
                parquet.read_row_group(group, columns=None if whole else list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise BadInputFile(path, f"unreadable data ({str(exc).strip()})") from exc


#: Every input a marketplace directory holds.
INPUTS = (*MARKETPLACE, EVENTS)


def contract_columns(name: str) -> dict[str, str]:
    """{column: kind} of the input `name` (an INPUTS entry)."""
    if name == EVENTS:
        from commerce.events import events_arrow_schema

        return {field.name: _kind(field.type) for field in events_arrow_schema()}
    return MARKETPLACE[name]


def marketplace_dir(data_dir: str | Path) -> Path:
    """`data_dir` as a Path, refused (FileNotFoundError, one line) unless it holds an `events/` directory:
    every command reading a marketplace directory names the same mistake the same way."""
    path = Path(data_dir)
    if not (path / EVENTS).is_dir():
        raise FileNotFoundError(f"{path} has no events/ directory: is it a `crosscart generate` output?")
    return path


def check_marketplace(data_dir: Path, names: Iterable[str], *, decode: bool = True) -> None:
    """`check_file` on each of `names` (INPUTS entries) present in `data_dir` (every part of a
    directory), before a command reads any: a missing file is for the command to refuse or skip."""
    for name in names:
        path = data_dir / name
        parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path] if path.exists() else []
        for part in parts:
            check_file(part, contract_columns(name), decode=decode)


def _is_decoding_error(exc: BaseException) -> bool:
    """pyarrow failing on bytes it read (ArrowInvalid "Index not in dictionary bounds", OSError "Corrupt
    snappy compressed data", "Couldn't deserialize thrift"): its OSErrors carry no errno. One with an
    errno is the host's (a full disk, a missing file, a refused permission), for the command as before."""
    import pyarrow as pa

    return isinstance(exc, pa.ArrowException) or (isinstance(exc, OSError) and exc.errno is None)


@contextmanager
def traced_to_inputs(*paths: Path) -> Iterator[None]:
    """Readers of the input files `paths` (a Parquet file, or a directory of parts) inside the block:
    a pyarrow decoding error raised in it (`_is_decoding_error`) is traced to the input it came from and
    raised as BadInputFile(`FILE: unreadable data (...)`), so the command prints one line naming the file
    where pyarrow named none ("Corrupt snappy compressed data"). For a job that reads its inputs once,
    out of core (`check_marketplace(..., decode=False)` checked their schema only): a damaged page behind
    an intact footer is found where it is read. Each existing part is decoded whole again to find the
    culprit, only once the block has failed; an error no input reproduces is raised unchanged (a bug).
    Put the block's outputs inside it (`commerce.files.staged_directory`), so they are dropped first."""
    try:
        yield
    except BadInputFile:
        raise
    except Exception as exc:
        if not _is_decoding_error(exc):
            raise
        for path in paths:
            path = Path(path)
            parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path] if path.is_file() else []
            for part in parts:
                check_file(part, {}, whole=True)  # BadInputFile naming the damaged part, if it is one
        raise

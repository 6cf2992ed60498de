"""The behaviour event log: idempotent batch inserts and export to the Parquet events contract."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.bulk import insert_ignore_stmt
from commerce.campaigns import Campaign
from commerce.catalog import Product
from commerce.coupons import Coupon
from commerce.errors import ValidationError
from commerce.events import (
    CLIENT_ID_PREFIX,
    EVENT_COLUMNS,
    EVENT_TYPES,
    PRODUCT_EVENTS,
    BehaviorEvent,
    events_arrow_schema,
)
from commerce.files import staged_directory
from commerce.services._util import stored_keys
from commerce.shoppers import Shopper
from commerce.sqltypes import as_utc, utcnow

EXPORT_BATCH_ROWS = 200_000


def _clean(event: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(event) - set(EVENT_COLUMNS)
    if unknown:
        raise ValidationError(f"unknown event fields: {sorted(unknown)}", code="invalid_event")
    for required in ("event_id", "ts", "shopper_id", "event_type"):
        if event.get(required) in (None, ""):
            raise ValidationError(f"event field {required!r} is required", code="invalid_event")
    if event["event_type"] not in EVENT_TYPES:
        raise ValidationError(f"unknown event_type {event['event_type']!r}", code="invalid_event")
    if event["event_type"] in PRODUCT_EVENTS and not event.get("product_id"):
        raise ValidationError(f"{event['event_type']} events need a product_id", code="invalid_event")
    if not isinstance(event["ts"], datetime):
        raise ValidationError("event field 'ts' must be a datetime", code="invalid_event")
    row = {col: event.get(col) for col in EVENT_COLUMNS}
    row["ts"] = as_utc(row["ts"])
    row["quantity"] = int(row["quantity"] if row["quantity"] is not None else 1)
    row["value"] = float(row["value"] or 0.0)
    return row


#: The ids an event names besides its shopper, and what they name.
_REFERENCES = {"product_id": Product, "campaign_id": Campaign, "coupon_id": Coupon}


def stored_shoppers(session: Session, shopper_ids: Iterable[str]) -> dict[str, str]:
    """Each distinct shopper id of a batch and the id it is stored as (`stored_keys`: its look-alikes
    read in one query): a batch naming `ｓ1` 1,000 times read the shoppers table 1,000 times, and one of
    1,000 distinct look-alikes still did."""
    return stored_keys(session, Shopper, shopper_ids)


def _as_stored(row: dict[str, Any], shoppers: Mapping[str, str], references: Mapping[str, Mapping]) -> None:
    """`row`'s ids as every lookup reads them (`stored_key`; read for the whole batch in `shoppers` and
    `references`), so the event names the stored row: `ｐ1` and `ＳＡＶＥ１０` were logged as sent while
    the product is `p1` and the coupon `SAVE10`, and features, models and campaign reports never joined
    them. A blank optional id names none."""
    row["shopper_id"] = shoppers[row["shopper_id"]] or None
    for column in _REFERENCES:
        if row[column] is not None:
            row[column] = references[column][row[column]] or None
    if not row["shopper_id"]:
        raise ValidationError("event field 'shopper_id' is required", code="invalid_event")
    if row["event_type"] in PRODUCT_EVENTS and not row["product_id"]:
        raise ValidationError(f"{row['event_type']} events need a product_id", code="invalid_event")


def client_event_id(source: str | int, event_id: str) -> str:
    """The stored id of an event a client sent: its own id inside the sender's namespace."""
    return f"{CLIENT_ID_PREFIX}{source}:{event_id}"


def record_events(
    session: Session,
    events: Iterable[Mapping[str, Any]],
    *,
    client: str | int | None = None,
    max_age: timedelta | None = None,
    shoppers: Mapping[str, str] | None = None,
) -> int:
    """Append a batch of events; ones whose event_id is already stored are skipped. Returns rows inserted.

    `client` names the sender of events that come from outside (an API key): their ids go into that
    sender's namespace, so a retry is still a no-op but no client id can equal a server id or another
    sender's. Without `client` (the server's own events) ids in the client namespace are refused.
    An event stamped more than `max_age` ago is refused (422 `ts_too_old`; the API passes the setting
    `max_event_age_days`): a client backdating events by years wrote into the history that features,
    models and past experiments were computed from. The whole batch is validated before anything is
    written, so a bad event changes nothing. `shoppers` is `stored_shoppers` of the batch when the caller
    read it already (the API checks a shopper key's binding on those ids): what was checked is stored,
    with no second reading.
    """
    rows = [_clean(e) for e in events]
    if shoppers is None:
        shoppers = stored_shoppers(session, (row["shopper_id"] for row in rows))
    references = {
        column: stored_keys(session, model, (row[column] for row in rows if row[column] is not None))
        for column, model in _REFERENCES.items()
    }
    for row in rows:
        _as_stored(row, shoppers, references)
    if max_age is not None and (old := [r["event_id"] for r in rows if r["ts"] < utcnow() - max_age]):
        raise ValidationError(
            f"events stamped more than {max_age.days} days ago: {old[:5]}", code="ts_too_old"
        )
    for row in rows:
        if client is not None:
            row["event_id"] = client_event_id(client, row["event_id"])
        elif row["event_id"].startswith(CLIENT_ID_PREFIX):
            raise ValidationError("server event ids cannot use the client namespace", code="invalid_event")
    if not rows:
        return 0
    stmt = insert_ignore_stmt(session, BehaviorEvent.__table__, ["event_id"]).returning(
        BehaviorEvent.event_id
    )
    return len(session.execute(stmt, rows).all())


def append_event_table(session: Session, table) -> None:
    """Bulk path for loaders: insert an Arrow table in the contract's events schema, skipping known ids.

    Values go straight to the driver's executemany (no per-row ORM type handling), which is what makes a
    million events load in seconds. Timestamps are written in the exact text form SQLAlchemy uses on
    SQLite, and as UTC timestamptz literals on PostgreSQL.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return
    missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise ValidationError(f"event table lacks columns {missing}", code="invalid_event")
    for col in ("event_id", "ts", "shopper_id", "event_type"):
        if table[col].null_count:
            raise ValidationError(f"event field {col!r} is required", code="invalid_event")
    if not pc.all(pc.is_in(table["event_type"], value_set=pa.array(EVENT_TYPES))).as_py():
        raise ValidationError("unknown event_type in event table", code="invalid_event")
    if pc.any(pc.starts_with(table["event_id"], CLIENT_ID_PREFIX)).as_py():
        raise ValidationError("loaded event ids cannot use the client namespace", code="invalid_event")
    dialect = session.get_bind().dialect.name
    ts = pc.strftime(table["ts"].cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%d %H:%M:%S")
    if dialect == "postgresql":
        ts = pc.binary_join_element_wise(ts, pa.scalar("+00:00"), "")
    columns = [ts if c == "ts" else table[c] for c in EVENT_COLUMNS]
    rows = zip(*(c.to_pylist() for c in columns), strict=True)
    names = ", ".join(EVENT_COLUMNS)
    if dialect == "postgresql":
        _copy_events_postgres(session, names, rows)
        return
    sql = (
        f"INSERT INTO events ({names}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT DO NOTHING"
    )
    session.connection().exec_driver_sql(sql, list(rows))


def _copy_events_postgres(session: Session, names: str, rows) -> None:
    """COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING."""
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS events_load (LIKE events INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY events_load ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO events ({names}) SELECT {names} FROM events_load ON CONFLICT DO NOTHING")
        cursor.execute("TRUNCATE events_load")


def export_events(
    session: Session, out_dir: str | Path, *, batch_rows: int = EXPORT_BATCH_ROWS
) -> list[Path]:
    """Write every event as `out_dir/part-NNNNN.parquet` in the contract's events schema; return the paths.

    Read them back with `pandas.read_parquet(out_dir)`. The parts are written beside `out_dir` and
    published together (`commerce.files.staged_directory`): the previous export's parts were removed
    first and the new ones written in place, so a failure half-way (a full disk) left part of the new
    export, and half a part, where the whole previous one had been.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = events_arrow_schema()
    out = Path(out_dir)
    columns = [getattr(BehaviorEvent, c) for c in EVENT_COLUMNS]
    result = session.execute(
        select(*columns)
        .order_by(BehaviorEvent.ts, BehaviorEvent.event_id)
        .execution_options(yield_per=batch_rows)
    )
    names: list[str] = []
    with staged_directory(out) as staging:
        for part in result.partitions():
            table = pa.Table.from_pylist([dict(zip(EVENT_COLUMNS, row, strict=True)) for row in part], schema)
            names.append(f"part-{len(names):05d}.parquet")
            pq.write_table(table, staging / names[-1])
        if not names:  # an empty log still yields a readable, typed dataset
            names.append("part-00000.parquet")
            pq.write_table(schema.empty_table(), staging / names[-1])
    return [out / name for name in names]

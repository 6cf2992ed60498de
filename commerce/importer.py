"""Load a generated marketplace directory (docs/data-contracts.md) into the database, idempotently.

Every table is written with bulk `INSERT ... ON CONFLICT DO NOTHING` keyed on the contract's ids, so a
re-run adds nothing and a run interrupted half-way can simply be repeated. Rows already present are not
updated. Resident ID numbers are validated and only their HMAC and last four characters are stored.

Past purchase events also become completed orders and past campaigns completed campaigns
(commerce.history), so revenue, annual counters, coupon usage and campaign outcomes reflect the
marketplace's past. Not loaded: the truth/ files (simulation only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commerce.bulk import insert_ignore
from commerce.catalog import DEFAULT_TARIFF_RATE, Category, Product, Stock
from commerce.coupons import Coupon, CouponGrant
from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.events import EVENT_COLUMNS
from commerce.history import load_campaign_history, load_order_history
from commerce.identity import Keyring, normalize_id_number
from commerce.inputs import INPUTS, check_marketplace
from commerce.merchants import BrandAuthorization, Merchant
from commerce.promotions import DiscountSeason
from commerce.services._util import given_id, licence_number
from commerce.services.coupons import check_coupon_id
from commerce.services.events import append_event_table
from commerce.services.logistics import seed_default_partners
from commerce.services.shoppers import rekey_people
from commerce.shoppers import Shopper, ShopperIdentity

#: Stock location per fulfillment mode for generated products (the contract has one stock figure).
LOCATIONS = {"bonded": "bonded-default", "direct_mail": "overseas-default"}
#: The contract carries no purchase cost; self-operated goods get cost = price x this ratio unless the
#: products file has a `cost_price` column.
SELF_OPERATED_COST_RATIO = Decimal("0.70")
EVENT_BATCH_ROWS = 100_000
EventSelection = Literal["all", "purchases", "none"]


@dataclass
class ImportStats:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Time per step ("catalog", "events", "orders"), to see what a load spends its time on.
    step_seconds: dict[str, float] = field(default_factory=dict)


def _read(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.exists():
        raise ValidationError(f"missing marketplace file {path}", code="missing_file")
    return pq.read_table(path).to_pylist()


def _rate(value: Any, places: str = "0.0001") -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places))


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def _parents_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {r["category_id"]: r for r in rows}

    def depth(cid: str) -> int:
        d, node = 0, by_id[cid]
        while node["parent_id"] is not None:
            d, node = d + 1, by_id[node["parent_id"]]
            if d > len(by_id):
                raise ValidationError("categories.parquet has a cycle", code="category_cycle")
        return d

    return sorted(rows, key=lambda r: (depth(r["category_id"]), r["category_id"]))


def _categories(session: Session, data_dir: Path) -> int:
    rows = _parents_first(_read(data_dir / "categories.parquet"))
    insert_ignore(
        session,
        Category.__table__,
        (
            {
                "category_id": given_id(r["category_id"], "category_id"),
                "parent_id": r["parent_id"],
                "name": r["name"],
                "vat_rate": _rate(r["vat_rate"]),
                "consumption_tax_rate": _rate(r["consumption_tax_rate"]),
                "tariff_rate": _rate(r.get("tariff_rate", DEFAULT_TARIFF_RATE)),
                "commission_rate": _rate(r["commission_rate"]),
                "repurchasable": bool(r["repurchasable"]),
            }
            for r in rows
        ),
        ["category_id"],
    )
    return len(rows)


def _merchants(session: Session, data_dir: Path) -> int:
    rows = _read(data_dir / "merchants.parquet")
    keys = ("merchant_id", "name", "country", "licence_no", "status", "created_at")
    insert_ignore(
        session,
        Merchant.__table__,
        (
            {
                **{k: r[k] for k in keys},
                "merchant_id": given_id(r["merchant_id"], "merchant_id"),
                "licence_no": licence_number(r["licence_no"]),  # the one form `merchants.apply` compares
                "reviewed_at": r.get("status_changed_at"),
            }
            for r in rows
        ),
        ["merchant_id"],
    )
    insert_ignore(
        session,
        BrandAuthorization.__table__,
        ({"merchant_id": r["merchant_id"], "brand": b} for r in rows for b in sorted(set(r["brands"] or ()))),
        ["merchant_id", "brand"],
    )
    return len(rows)


def _require_known(session: Session, what: str, column, wanted: set[str]) -> None:
    """Refuse rows that point at ids neither the files nor the database have, naming a few of them."""
    missing = wanted - set(session.scalars(select(column)))
    if missing:
        raise ValidationError(f"unknown {what}: {sorted(missing)[:5]}", code="unknown_reference")


def _require_own_skus(session: Session, rows: list[dict[str, Any]]) -> None:
    """A SKU is unique per merchant (`Product`): refuse, naming a few, a merchant's SKU named for two
    products, in the file or by a stored product the file does not name (the database refused the load
    with an IntegrityError). Another merchant's product under the same SKU is no clash."""
    stored = session.execute(select(Product.merchant_id, Product.sku, Product.product_id))
    owner = {(merchant, sku): product for merchant, sku, product in stored}
    clashes = set()
    for r in rows:
        key = (r["merchant_id"], r["sku"])
        if owner.setdefault(key, r["product_id"]) != r["product_id"]:
            clashes.add(key)
    if clashes:
        raise ValidationError(
            f"merchant SKUs named for two products: {sorted(clashes)[:5]}", code="duplicate_sku"
        )


def _products(session: Session, data_dir: Path) -> int:
    rows = _read(data_dir / "products.parquet")
    _require_known(
        session, "merchant ids in products", Merchant.merchant_id, {r["merchant_id"] for r in rows}
    )
    _require_known(
        session, "category ids in products", Category.category_id, {r["category_id"] for r in rows}
    )
    _require_own_skus(session, rows)
    keys = ("product_id", "sku", "merchant_id", "title", "category_id", "brand", "origin_country")
    keys += ("fulfillment", "self_operated", "status", "created_at")

    parcels_path = data_dir / "product_parcels.parquet"  # weight and volume, when the generator wrote them
    parcels = {p["product_id"]: p for p in _read(parcels_path)} if parcels_path.is_file() else {}

    def product(r: dict[str, Any]) -> dict[str, Any]:
        price = _money(r["price"])
        cost = _money(r.get("cost_price"))
        if r["self_operated"] and cost is None:
            cost = (price * SELF_OPERATED_COST_RATIO).quantize(Decimal("0.01"))
        parcel = parcels.get(r["product_id"], {})
        size = {k: int(parcel[k]) for k in ("weight_g", "volume_cm3") if parcel.get(k) is not None}
        return {
            **{k: r[k] for k in keys},
            "product_id": given_id(r["product_id"], "product_id"),
            "price": price,
            "cost_price": cost,
            **size,
        }

    insert_ignore(session, Product.__table__, (product(r) for r in rows), ["product_id"])
    insert_ignore(
        session,
        Stock.__table__,
        (
            {
                "product_id": r["product_id"],
                "location": LOCATIONS[r["fulfillment"]],
                "quantity": int(r["stock"]),
                "reserved": 0,
            }
            for r in rows
        ),
        ["product_id", "location"],
    )
    return len(rows)


def _shoppers(session: Session, data_dir: Path, keyring: Keyring) -> tuple[int, int]:
    rows = _read(data_dir / "shoppers.parquet")
    keys = ("shopper_id", "region", "segment", "created_at")

    def shopper(r: dict[str, Any]) -> dict[str, Any]:
        return {**{k: r[k] for k in keys}, "shopper_id": given_id(r["shopper_id"], "shopper_id")}

    insert_ignore(session, Shopper.__table__, map(shopper, rows), ["shopper_id"])
    identity_rows = _read(data_dir / "identities.parquet")
    _require_known(
        session, "shopper ids in identities", Shopper.shopper_id, {r["shopper_id"] for r in identity_rows}
    )
    identities, numbers = [], []
    bad = 0
    for r in identity_rows:
        try:
            number = normalize_id_number(r["id_number"])
        except ValidationError:
            bad += 1
            continue
        numbers.append(number)
        identities.append(
            {
                "shopper_id": r["shopper_id"],
                "real_name": r["real_name"],
                "id_digest": keyring.digest(number),
                "id_last4": number[-4:],
                "key_version": keyring.version,
            }
        )
    if bad:
        raise ValidationError(f"identities.parquet has {bad} invalid ID numbers", code="invalid_id_number")
    rekey_people(session, keyring, numbers)
    insert_ignore(session, ShopperIdentity.__table__, identities, ["shopper_id"])
    return len(rows), len(identities)


def _seasons(session: Session, data_dir: Path) -> int:
    path = data_dir / "seasons.parquet"
    rows = _read(path) if path.exists() else []
    insert_ignore(
        session,
        DiscountSeason.__table__,
        (
            {
                "season_id": r["season_id"],
                "name": r["name"],
                "starts_at": r["start"],
                "ends_at": r["end"],
                "discount": _rate(r["discount"]),
            }
            for r in rows
        ),
        ["season_id"],
    )
    return len(rows)


def _campaigns(data_dir: Path) -> dict[str, dict[str, Any]]:
    path = data_dir / "campaigns.parquet"
    return {r["campaign_id"]: r for r in _read(path)} if path.exists() else {}


def _coupon_id(raw: str) -> str:
    """A coupon id of the files, refused unless already in the one form coupons are stored in
    (`check_coupon_id`): the events' grants, the order history and the campaigns name the coupon by the
    file's id, so a coupon stored as `CP1` for a file's `ＣＰ1` left them pointing at nothing (the grants'
    foreign key failed after the catalog was committed)."""
    stored = check_coupon_id(raw)
    if stored != raw:
        raise ValidationError(
            f"coupon {raw!r} is stored as {stored!r}: name it so in every file", code="invalid_coupon"
        )
    return stored


def _coupons(session: Session, data_dir: Path, campaigns: dict[str, dict[str, Any]]) -> int:
    path = data_dir / "coupons.parquet"
    rows = _read(path) if path.exists() else []

    def coupon(r: dict[str, Any]) -> dict[str, Any]:
        value = Decimal(str(r["value"]))
        if r["kind"] == "percent_off" and not 0 < value <= 1:
            raise ValidationError(
                f"coupon {r['coupon_id']}: percent_off value must be a fraction in (0, 1]",
                code="invalid_coupon",
            )
        campaign = campaigns.get(r["campaign_id"], {})
        return {
            "coupon_id": _coupon_id(r["coupon_id"]),
            "name": r["coupon_id"],
            "issuer": "platform",
            "campaign_id": None,  # a foreign key: past campaigns link their coupons once stored (history)
            "kind": r["kind"],
            "value": value.quantize(Decimal("0.0001")),
            "cap": _money(r["cap"]),
            "min_spend": _money(r["min_spend"]) or Decimal("0"),
            "scope_type": r["scope_type"],
            "scope_id": r["scope_id"],
            "starts_at": campaign.get("start"),
            "ends_at": campaign.get("end"),
            "per_shopper_limit": 1,
            "requires_grant": r["campaign_id"] is not None,
            "used": 0,
            "spent": Decimal("0"),
        }

    insert_ignore(session, Coupon.__table__, (coupon(r) for r in rows), ["coupon_id"])
    return len(rows)


def _event_batches(data_dir: Path, selection: EventSelection):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    events_dir = data_dir / "events"
    if selection == "none" or not events_dir.exists():
        return
    dataset = ds.dataset(events_dir, format="parquet")
    wanted = ["purchase", "coupon_grant", "coupon_redeem"] if selection == "purchases" else None
    flt = pc.field("event_type").isin(wanted) if wanted else None
    for batch in dataset.to_batches(columns=list(EVENT_COLUMNS), filter=flt, batch_size=EVENT_BATCH_ROWS):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def load_marketplace(
    session_factory: sessionmaker[Session],
    data_dir: str | Path,
    *,
    keyring: Keyring,
    events: EventSelection = "all",
    orders: bool = True,
    past_campaigns: bool = True,
) -> ImportStats:
    """Load `data_dir` into the database; returns rows read per table and the time taken.

    `keyring` hashes declared identities (callers pass Settings.identity_keyring).
    `events="purchases"` loads only purchase and coupon events (about 12% of the log; revenue
    analytics and coupon grants need no more), `"none"` skips the log. With `orders` (default)
    purchase events in the files, whatever `events` says, also become completed orders with their
    tax, annual counters and coupon redemptions, and with `past_campaigns` (default) past campaigns
    become completed campaigns with their audience (commerce.history).
    Demo scale (1M events, 95k purchases) takes ~40 s on SQLite on a busy 2-core machine, ~19 s with
    `"purchases"`; see bench/commerce_import.py and docs/commerce.md for the per-step times.
    Catalog and people load in one transaction; events commit per batch of 100k rows; orders, then
    campaigns, in one transaction each. Every file is checked first (`commerce.inputs.check_marketplace`:
    columns, kinds, pages), so a directory with a bad file loads nothing.
    """
    if events not in ("all", "purchases", "none"):
        raise ValidationError("events must be 'all', 'purchases' or 'none'", code="invalid_option")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValidationError(f"{data_dir} is not a directory", code="missing_file")
    import pyarrow.compute as pc

    started = time.perf_counter()
    check_marketplace(data_dir, INPUTS)  # a bad file found half-way left the tables before it loaded
    stats = ImportStats()
    campaigns = _campaigns(data_dir)
    with transaction(session_factory) as session:
        seed_default_partners(session)
        stats.rows["categories"] = _categories(session, data_dir)
        stats.rows["merchants"] = _merchants(session, data_dir)
        stats.rows["products"] = _products(session, data_dir)
        stats.rows["shoppers"], stats.rows["identities"] = _shoppers(session, data_dir, keyring)
        stats.rows["seasons"] = _seasons(session, data_dir)
        stats.rows["coupons"] = _coupons(session, data_dir, campaigns)
    stats.step_seconds["catalog"] = time.perf_counter() - started
    stats.rows["events"] = stats.rows["coupon_grants"] = 0
    for batch in _event_batches(data_dir, events):
        grant_rows = batch.filter(
            pc.and_(pc.equal(batch["event_type"], "coupon_grant"), pc.is_valid(batch["coupon_id"]))
        )
        grants = [
            {
                "coupon_id": e["coupon_id"],
                "shopper_id": e["shopper_id"],
                "campaign_id": e["campaign_id"],
                "channel": campaigns.get(e["campaign_id"], {}).get("channel", "site"),
                "granted_at": e["ts"],
            }
            for e in grant_rows.select(["coupon_id", "shopper_id", "campaign_id", "ts"]).to_pylist()
        ]
        with transaction(session_factory) as session:
            append_event_table(session, batch)
            insert_ignore(session, CouponGrant.__table__, grants, ["coupon_id", "shopper_id"])
        stats.rows["events"] += batch.num_rows
        stats.rows["coupon_grants"] += len(grants)
    stats.step_seconds["events"] = time.perf_counter() - started - stats.step_seconds["catalog"]
    if orders:
        step = time.perf_counter()
        with transaction(session_factory) as session:
            stats.rows |= load_order_history(session, data_dir)
        stats.step_seconds["orders"] = time.perf_counter() - step
    if past_campaigns:
        step = time.perf_counter()
        with transaction(session_factory) as session:
            stats.rows |= load_campaign_history(session, data_dir)
        stats.step_seconds["campaigns"] = time.perf_counter() - step
    stats.seconds = time.perf_counter() - started
    return stats

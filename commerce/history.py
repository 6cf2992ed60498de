"""Rebuild completed orders from past purchase events, so reports and counters see the marketplace's past.

One order per (shopper, session, fulfillment mode) of purchase events (per event when it has no session),
status `completed`, created at the first purchase and paid at the last. Lines are priced at what was
actually paid (event `value`); tax, commission and margin use the same code as checkout. When a
`coupon_redeem` event shares the session, the coupon's discount is reconstructed on top of the paid
amount (gross = paid + discount) and a redemption is recorded (on the session's first order when
bonded and direct-mail goods split it).

History is recorded as it happened: the per-order limit is not enforced (an order above 5,000 CNY that
live checkout would refuse is taxed as general trade) and neither are coupon windows or per-shopper
limits. The per-person annual counter gets the goods value live payment would have added, capped at the
26,000 CNY limit (its CHECK constraint): a person over it simply cannot buy more that year.
Stock is not moved: the catalog's stock figures are today's.

Idempotent: an order's `import_ref` is its first purchase's event_id (unique). Baskets whose ref is
already stored are skipped; imports are serialized (BEGIN IMMEDIATE on SQLite, an advisory lock on
PostgreSQL), so lines, counters and redemptions are written exactly once; the unique index is the
last guard.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from commerce.bulk import insert_rows_fast
from commerce.campaigns import CONTROL, Campaign
from commerce.catalog import Category, Product, Stock
from commerce.coupons import Coupon, CouponRedemption, CouponShopperUsage
from commerce.errors import ValidationError
from commerce.orders import AnnualSpend, LineAllocation, Order, OrderLine, OrderStatusChange
from commerce.services import campaigns as cm
from commerce.services._util import given_id
from commerce.services.catalog import category_paths
from commerce.services.checkout import customs_year
from commerce.services.coupons import PricedLine, in_scope, recount_campaign_spend
from commerce.services.logistics import DeliveryWindow, choose_partner
from commerce.shoppers import ShopperIdentity
from commerce.sqltypes import as_utc, round_fen
from commerce.tax import ANNUAL_LIMIT, CROSS_BORDER, GENERAL_TRADE, ORDER_LIMIT, TaxRates, allocate, line_tax

IMPORT_REASON = "imported from purchase history"
ZERO = Decimal("0.00")
#: PostgreSQL advisory lock held while importing history, so the "already imported" check is exact.
HISTORY_LOCK_KEY = 7_236_001


@dataclass
class _Purchase:
    event_id: str
    ts: datetime
    product_id: str
    quantity: int
    paid: Decimal


def _read_events(events_dir: Path) -> list[dict[str, Any]]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not events_dir.exists():
        return []
    columns = ["event_id", "ts", "shopper_id", "product_id", "event_type", "quantity", "value"]
    columns += ["session_id", "coupon_id"]
    table = ds.dataset(events_dir, format="parquet").to_table(
        columns=columns, filter=pc.field("event_type").isin(["purchase", "coupon_redeem"])
    )
    values = [table[c].to_pylist() for c in columns]  # column-wise: much faster than row dicts
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _group(rows: list[dict[str, Any]], mode_of: dict[str, str]):
    """Purchases per (shopper, session, mode) and the coupon redeemed per (shopper, session)."""
    baskets: dict[tuple[str, str, str], list[_Purchase]] = defaultdict(list)
    redeemed: dict[tuple[str, str], tuple[str, datetime]] = {}
    for r in rows:
        session_key = r["session_id"] or f"event:{r['event_id']}"
        if r["event_type"] == "coupon_redeem":
            if r["coupon_id"] is not None and r["session_id"] is not None:
                key = (r["shopper_id"], session_key)
                if key not in redeemed or r["ts"] < redeemed[key][1]:
                    redeemed[key] = (r["coupon_id"], r["ts"])
            continue
        quantity = int(r["quantity"] or 0)
        paid = Decimal(str(r["value"] or 0)).quantize(Decimal("0.01"))
        if quantity < 1 or paid < 0:
            raise ValidationError(
                f"purchase event {r['event_id']} needs quantity >= 1 and value >= 0", code="invalid_event"
            )
        purchase = _Purchase(r["event_id"], as_utc(r["ts"]), r["product_id"], quantity, paid)
        baskets[(r["shopper_id"], session_key, mode_of[r["product_id"]])].append(purchase)
    return baskets, redeemed


def _discounts(coupon: Coupon, lines: list[PricedLine]) -> list[Decimal]:
    """Per line, the discount the coupon took, rebuilt from amounts already net of it (paid = gross - d)."""
    eligible = [i for i, line in enumerate(lines) if in_scope(coupon, line)] or list(range(len(lines)))
    base = sum((lines[i].amount for i in eligible), ZERO)
    if base <= 0:
        return [ZERO] * len(lines)
    if coupon.kind == "amount_off":
        amount = coupon.value
    elif coupon.value < 1:
        amount = round_fen(base * coupon.value / (1 - coupon.value))
    else:
        amount = coupon.cap or ZERO
    if coupon.cap is not None:
        amount = min(amount, coupon.cap)
    shares = allocate(round_fen(amount), [lines[i].amount for i in eligible])
    out = [ZERO] * len(lines)
    for i, share in zip(eligible, shares, strict=True):
        out[i] = share
    return out


def _upsert_add(session: Session, table, keys: list[str], column: str, rows: list[dict], cap=None):
    """INSERT rows, or add their `column` to the existing row's (optionally capped), on both backends."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    new = table.c[column] + stmt.excluded[column]
    if cap is not None:
        new = func.round(new, 2)
        new = func.least(new, cap) if dialect == "postgresql" else func.min(new, cap)
    session.execute(stmt.on_conflict_do_update(index_elements=keys, set_={column: new}), rows)


def load_order_history(session: Session, data_dir: Path) -> dict[str, int]:
    """Create completed orders for the purchase events in `data_dir/events`; return what was done.

    Runs inside the caller's transaction. Purchases of shoppers without a verified identity (customs
    needs one) are skipped and counted; unknown products or coupons are refused before any write.
    """
    if session.get_bind().dialect.name == "postgresql":  # one history import at a time (SQLite: always)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HISTORY_LOCK_KEY})
    rows = _read_events(Path(data_dir) / "events")
    stats = {"orders": 0, "order_lines": 0, "redemptions": 0, "skipped_no_identity": 0}
    stats |= {"over_order_limit": 0, "over_annual_limit": 0}
    if not rows:
        return stats
    product_ids = {r["product_id"] for r in rows if r["event_type"] == "purchase"}
    if None in product_ids:
        raise ValidationError("purchase events need a product_id", code="invalid_event")
    columns = (Product.product_id, Product.merchant_id, Product.category_id, Product.fulfillment)
    columns += (Product.self_operated, Product.price, Product.cost_price)
    products = {  # plain rows, not ORM objects: attribute access is hot here
        p.product_id: p
        for p in session.execute(select(*columns).where(Product.product_id.in_(sorted(product_ids))))
    }
    if missing := product_ids - set(products):
        raise ValidationError(
            f"purchases of unknown products: {sorted(missing)[:5]}", code="unknown_reference"
        )
    coupon_ids = {r["coupon_id"] for r in rows if r["event_type"] == "coupon_redeem" and r["coupon_id"]}
    coupons = {
        c.coupon_id: c for c in session.scalars(select(Coupon).where(Coupon.coupon_id.in_(coupon_ids)))
    }
    if missing := coupon_ids - set(coupons):
        raise ValidationError(
            f"redemptions of unknown coupons: {sorted(missing)[:5]}", code="unknown_reference"
        )
    rates, commission = {}, {}
    for c in session.scalars(select(Category)):
        rates[c.category_id] = TaxRates(c.vat_rate, c.consumption_tax_rate, c.tariff_rate)
        commission[c.category_id] = c.commission_rate
    paths = category_paths(session)
    identities = {
        sid: (digest, name)
        for sid, digest, name in session.execute(
            select(ShopperIdentity.shopper_id, ShopperIdentity.id_digest, ShopperIdentity.real_name)
        )
    }
    baskets, redeemed = _group(rows, {pid: p.fulfillment for pid, p in products.items()})
    known = set(session.scalars(select(Order.import_ref).where(Order.import_ref.is_not(None))))
    coupon_owner: dict[tuple[str, str], str] = {}  # a split session's coupon goes to its first order
    for shopper_id, session_key, mode in baskets:
        if (shopper_id, session_key) in redeemed:
            coupon_owner.setdefault((shopper_id, session_key), mode)
    partners = {mode: choose_partner(session, mode) for mode in {k[2] for k in baskets}}
    published = {  # past orders carry their partner's published day range; no lane was recorded
        mode: DeliveryWindow(p.min_days, p.max_days, p.max_days) for mode, p in partners.items()
    }

    orders: dict[str, dict[str, Any]] = {}
    lines: dict[str, list[dict[str, Any]]] = {}
    redemptions: dict[str, tuple[str, datetime]] = {}
    for (shopper_id, session_key, mode), purchases in baskets.items():
        if shopper_id not in identities:
            stats["skipped_no_identity"] += len(purchases)
            continue
        ref = min(p.event_id for p in purchases)
        if ref in known:  # a re-run: skip early (ON CONFLICT still guards concurrent runs)
            continue
        purchases.sort(key=lambda p: (p.ts, p.event_id))
        coupon_hit = (
            redeemed.get((shopper_id, session_key))
            if coupon_owner.get((shopper_id, session_key)) == mode
            else None
        )
        coupon = coupons[coupon_hit[0]] if coupon_hit else None
        discounts = [ZERO] * len(purchases)
        if coupon is not None:
            discounts = _discounts(
                coupon,
                [
                    PricedLine(
                        p.product_id,
                        products[p.product_id].merchant_id,
                        paths[products[p.product_id].category_id],
                        p.paid,
                    )
                    for p in purchases
                ],
            )
        goods_value = sum((p.paid for p in purchases), ZERO)
        regime = CROSS_BORDER if goods_value <= ORDER_LIMIT else GENERAL_TRADE
        stats["over_order_limit"] += regime == GENERAL_TRADE and (
            len(purchases) > 1 or purchases[0].quantity > 1
        )
        order_lines = []
        for no, (p, d) in enumerate(zip(purchases, discounts, strict=True), start=1):
            product = products[p.product_id]
            tax = line_tax(p.paid, rates[product.category_id], regime)
            gross = p.paid + d
            order_lines.append(
                {
                    "line_no": no,
                    "product_id": p.product_id,
                    "merchant_id": product.merchant_id,
                    "quantity": p.quantity,
                    "list_price": product.price,
                    "unit_price": round_fen(gross / p.quantity),
                    "gross": gross,
                    "discount": d,
                    "tax_rate": (tax / p.paid).quantize(Decimal("0.0001")) if p.paid else Decimal(0),
                    "tax": tax,
                    "total": p.paid + tax,
                    "commission": ZERO
                    if product.self_operated
                    else round_fen(p.paid * commission[product.category_id]),
                    "margin": round_fen(p.paid - product.cost_price * p.quantity)
                    if product.self_operated
                    else ZERO,
                }
            )
        digest, name = identities[shopper_id]
        created, paid_at = purchases[0].ts, purchases[-1].ts
        earliest, latest = published[mode].dates(paid_at)
        orders[ref] = {
            "import_ref": ref,
            "shopper_id": shopper_id,
            "status": "completed",
            "fulfillment": mode,
            "partner_id": partners[mode].partner_id,
            "tax_regime": regime,
            "coupon_id": coupon.coupon_id if coupon else None,
            "identity_digest": digest,
            "declared_name": name,
            "goods_total": sum((line["gross"] for line in order_lines), ZERO),
            "discount_total": sum((line["discount"] for line in order_lines), ZERO),
            "tax_total": sum((line["tax"] for line in order_lines), ZERO),
            "total": sum((line["total"] for line in order_lines), ZERO),
            "payment_ref": f"history:{ref}",
            "status_reason": IMPORT_REASON,
            "created_at": created,
            "paid_at": paid_at,
            "delivery_earliest": earliest,
            "delivery_latest": latest,
        }
        lines[ref] = order_lines
        if coupon is not None:
            redemptions[ref] = (coupon.coupon_id, coupon_hit[1])

    new_ids = _insert_orders(session, list(orders.values()))
    _insert_rows(
        session,
        OrderLine.__table__,
        ({**line, "order_id": oid} for ref, oid in new_ids.items() for line in lines[ref]),
    )
    _allocate_from_first_stock_row(session)
    _insert_rows(
        session,
        OrderStatusChange.__table__,
        (
            {
                "order_id": oid,
                "from_status": None,
                "to_status": "completed",
                "reason": IMPORT_REASON,
                "changed_at": orders[ref]["paid_at"],
            }
            for ref, oid in new_ids.items()
        ),
    )
    spend: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for ref in new_ids:
        o = orders[ref]
        spend[(o["identity_digest"], customs_year(o["paid_at"]))] += o["goods_total"] - o["discount_total"]
    stats["over_annual_limit"] = sum(v > ANNUAL_LIMIT for v in spend.values())
    _upsert_add(
        session,
        AnnualSpend.__table__,
        ["identity_digest", "year"],
        "amount",
        [{"identity_digest": d, "year": y, "amount": min(v, ANNUAL_LIMIT)} for (d, y), v in spend.items()],
        cap=ANNUAL_LIMIT,
    )
    _record_redemptions(
        session, {ref: redemptions[ref] for ref in new_ids if ref in redemptions}, orders, new_ids
    )
    stats["orders"] = len(new_ids)
    stats["order_lines"] = sum(len(lines[ref]) for ref in new_ids)
    stats["redemptions"] = sum(ref in redemptions for ref in new_ids)
    return stats


def _insert_orders(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the orders (none of them known when the run began); return import_ref -> order_id."""
    insert_rows_fast(session, Order.__table__, rows, ignore_conflicts=True)
    wanted = {r["import_ref"] for r in rows}
    stored = session.execute(select(Order.import_ref, Order.order_id).where(Order.import_ref.is_not(None)))
    return {ref: oid for ref, oid in stored if ref in wanted}


def _allocate_from_first_stock_row(session: Session) -> None:
    """Rebuilt orders' lines drew their units from the product's first stock row (stock is not moved)."""
    line, alloc = OrderLine.__table__, LineAllocation.__table__
    first_row = select(func.min(Stock.id)).where(Stock.product_id == line.c.product_id).scalar_subquery()
    source = (
        select(line.c.id, first_row, line.c.quantity)
        .join(Order.__table__, Order.order_id == line.c.order_id)
        .where(
            Order.import_ref.is_not(None),
            ~select(alloc.c.id).where(alloc.c.order_line_id == line.c.id).exists(),
        )
    )
    session.execute(alloc.insert().from_select(["order_line_id", "stock_id", "quantity"], source))


def _insert_rows(session: Session, table, rows) -> None:
    insert_rows_fast(session, table, list(rows))


def _record_redemptions(
    session: Session,
    used: dict[str, tuple[str, datetime]],
    orders: dict[str, dict[str, Any]],
    order_ids: dict[str, int],
) -> None:
    """Redemption rows plus the coupon, per-shopper and campaign counters live redemption would have
    raised. A stored campaign's budget is raised to its spend if history passed it (as it happened)."""
    if not used:
        return
    rows = [
        {
            "coupon_id": coupon_id,
            "shopper_id": orders[ref]["shopper_id"],
            "order_id": order_ids[ref],
            "amount": orders[ref]["discount_total"],
            "redeemed_at": at,
        }
        for ref, (coupon_id, at) in used.items()
    ]
    _insert_rows(session, CouponRedemption.__table__, rows)
    per_coupon: dict[str, list[Any]] = defaultdict(lambda: [0, ZERO])
    per_shopper: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        per_coupon[r["coupon_id"]][0] += 1
        per_coupon[r["coupon_id"]][1] += r["amount"]
        per_shopper[(r["coupon_id"], r["shopper_id"])] += 1
    table = Coupon.__table__
    for coupon_id, (n, amount) in sorted(per_coupon.items()):
        session.execute(
            update(table)
            .where(table.c.coupon_id == coupon_id)
            .values(used=table.c.used + n, spent=func.round(table.c.spent + amount, 2))
        )
    _upsert_add(
        session,
        CouponShopperUsage.__table__,
        ["coupon_id", "shopper_id"],
        "used",
        [{"coupon_id": c, "shopper_id": s, "used": n} for (c, s), n in sorted(per_shopper.items())],
    )
    campaigns = select(Coupon.campaign_id).where(
        Coupon.coupon_id.in_(sorted(per_coupon)), Coupon.campaign_id.is_not(None)
    )
    recount_campaign_spend(session, session.scalars(campaigns), raise_budget=True)


def _design_probabilities(
    session: Session, campaign_id: str, control_share: Decimal, audience: list[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """Each member's logged arm probabilities under the contract's design of a past campaign: the
    holdout with `control_share`, else one of the campaign's coupons uniformly."""
    coupons = sorted(session.scalars(select(Coupon.coupon_id).where(Coupon.campaign_id == campaign_id)))
    share = float(control_share)
    design = {CONTROL: share, **{c: (1 - share) / len(coupons) for c in coupons}}
    return {shopper: design for shopper, _ in audience}


def load_campaign_history(session: Session, data_dir: Path) -> dict[str, int]:
    """Past campaigns (campaigns.parquet, assignments.parquet) as completed campaigns with their audience.

    Goes through commerce.services.campaigns' lifecycle (create -> audience -> schedule -> start ->
    complete, at the campaign's own start and end), so grants link to members exactly as for a live
    campaign; grants already loaded from coupon_grant events are reused. The contract has no budget:
    a campaign's budget is the discount its coupons actually gave (at least 0.01 CNY, the minimum the
    model accepts), and its `spent` is that discount, so its budget is a hard cap from then on.
    Campaigns already stored are left alone; one without treated shoppers cannot be scheduled and is
    skipped (counted). The importer stores coupons without their campaign (`coupons.campaign_id` is a
    foreign key, and campaigns come after the orders that set their budget); each campaign stored
    here takes its coupons (coupons.parquet), so those of a skipped or unloaded one keep none. Members
    log their arm probabilities under the contract's randomisation (the holdout with the campaign's
    control share, else one of its coupons uniformly), so later plans can be valued from these
    outcomes (`marketing.plan_value`).
    """
    import pyarrow.parquet as pq

    data_dir = Path(data_dir)
    stats = {"campaigns": 0, "campaign_members": 0, "campaigns_skipped": 0}
    path = data_dir / "campaigns.parquet"
    if not path.exists():
        return stats
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if (data_dir / "assignments.parquet").exists():
        table = pq.read_table(data_dir / "assignments.parquet", columns=["campaign_id", "shopper_id", "arm"])
        for cid, shopper_id, arm in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
            members[cid].append((shopper_id, arm))
    coupons: dict[str, list[str]] = defaultdict(list)
    if (data_dir / "coupons.parquet").exists():
        table = pq.read_table(data_dir / "coupons.parquet", columns=["coupon_id", "campaign_id"])
        for coupon_id, cid in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
            coupons[cid].append(coupon_id)
    for c in sorted(pq.read_table(path).to_pylist(), key=lambda r: (r["start"], r["campaign_id"])):
        cid = given_id(c["campaign_id"], "campaign_id")  # the audience and coupons name it so
        if session.get(Campaign, cid) is not None:
            continue
        audience = sorted(members.get(cid, []))
        if not any(arm != CONTROL for _, arm in audience):
            stats["campaigns_skipped"] += 1
            continue
        mine = Coupon.coupon_id.in_(coupons.get(cid, []))
        spent = session.scalar(
            select(func.sum(CouponRedemption.amount))
            .join(Coupon, Coupon.coupon_id == CouponRedemption.coupon_id)
            .where(mine)
        )
        budget = max(Decimal(spent or 0), Decimal("0.01"))
        share = Decimal(str(c["control_share"])).quantize(Decimal("0.0001"))
        cm.create_campaign(
            session, cm.CampaignInput(c["name"], c["channel"], budget, c["start"], c["end"], share, cid)
        )
        session.execute(update(Coupon).where(mine).values(campaign_id=cid))  # the campaign exists now
        cm.set_audience(
            session, cid, audience, arm_probabilities=_design_probabilities(session, cid, share, audience)
        )
        cm.schedule_campaign(session, cid, at=c["start"], contact_policy=None)  # as it happened
        cm.start_campaign(session, cid, at=c["start"])
        cm.complete_campaign(session, cid, at=c["end"])
        recount_campaign_spend(session, [cid])  # the budget is a hard cap after import as well
        stats["campaigns"] += 1
        stats["campaign_members"] += len(audience)
    return stats

"""Stock hoarding (issue 9, item 4): unpaid orders expire and give back stock, coupon use and quota
exactly once (also under concurrency, on SQLite and PostgreSQL); a shopper holds a bounded number of
unpaid orders; the annual pre-check counts open unpaid orders."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from commerce.catalog import Stock
from commerce.coupons import Coupon, CouponRedemption
from commerce.db import transaction
from commerce.errors import DomainError
from commerce.identity import Keyring
from commerce.orders import AnnualSpend, Order, OrderStatusChange
from commerce.services import coupons, orders, shoppers
from commerce.services.checkout import CartLine, checkout, customs_year
from commerce.services.pending import EXPIRED_REASON, expire_pending_orders
from commerce.sqltypes import utcnow
from tests.commerce.conftest import IDENTITY_KEY, NOW, make_id_number
from tests.serving.conftest import auth

TTL = timedelta(minutes=30)


def _stock(factory, product_id):
    with factory() as s:
        row = s.scalar(select(Stock).where(Stock.product_id == product_id))
        return row.quantity, row.reserved


def _age(factory, minutes: float) -> None:
    """Let time pass for every unpaid order."""
    with transaction(factory) as s:
        s.execute(
            update(Order.__table__)
            .where(Order.status == "pending_payment")
            .values(created_at=utcnow() - timedelta(minutes=minutes))
        )


def test_hoarding_is_bounded_and_expired_orders_give_everything_back(client, keys, session_factory):
    """The attack: one shopper reserves a product's whole stock with unpaid orders and keeps it."""
    s1, s2 = auth(keys["shopper"]), auth(keys["shopper2"])
    first = {"lines": [{"product_id": "p05", "quantity": 1}], "coupon_id": "c-10off"}
    one = {"lines": [{"product_id": "p05", "quantity": 1}]}
    placed = [client.post("/v1/shoppers/s1/orders", json=first, headers=s1)]
    placed += [client.post("/v1/shoppers/s1/orders", json=one, headers=s1) for _ in range(4)]
    assert [r.status_code for r in placed] == [201] * 5
    assert _stock(session_factory, "p05") == (5, 5)
    sixth = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p06", "quantity": 1}]}, headers=s1
    )
    assert sixth.status_code == 422 and sixth.json()["code"] == "too_many_pending_orders"
    assert client.post("/v1/shoppers/s2/orders", json=one, headers=s2).json()["code"] == "out_of_stock"

    _age(session_factory, 29)  # still inside the payment window: nothing expires
    assert client.post("/v1/shoppers/s2/orders", json=one, headers=s2).json()["code"] == "out_of_stock"

    _age(session_factory, 31)  # the window has passed: the next checkout expires them first
    taken = client.post("/v1/shoppers/s2/orders", json=one, headers=s2)
    assert taken.status_code == 201, taken.text
    assert _stock(session_factory, "p05") == (5, 1)
    with session_factory() as s:
        for r in placed:
            order = s.get(Order, r.json()["order_id"])
            assert (order.status, order.status_reason) == ("cancelled", EXPIRED_REASON)
            changes = s.scalars(select(OrderStatusChange).where(OrderStatusChange.order_id == order.order_id))
            assert [c.to_status for c in changes] == ["pending_payment", "cancelled"]
        coupon = s.get(Coupon, "c-10off")
        assert (coupon.used, coupon.spent) == (0, Decimal("0.00"))
    # A second sweep finds nothing more to give back.
    assert client.app.state.serving.pending_orders.refresh()
    assert client.app.state.serving.pending_orders.current == []
    assert _stock(session_factory, "p05") == (5, 1)
    again = client.post("/v1/shoppers/s1/orders", json=first, headers=s1)  # the coupon use came back
    assert again.status_code == 201 and Decimal(again.json()["discount_total"]) == Decimal("10.00")


def test_annual_pre_check_counts_open_unpaid_orders(client, keys, session_factory):
    s1 = auth(keys["shopper"])
    with transaction(session_factory) as s:
        digest = s.get(Order, 1).identity_digest
        s.execute(
            update(AnnualSpend.__table__)
            .where(AnnualSpend.identity_digest == digest, AnnualSpend.year == customs_year(utcnow()))
            .values(amount=Decimal("25800.00"))
        )
    first = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p05", "quantity": 1}]}, headers=s1
    )
    assert first.status_code == 201  # 25,800 paid + 99.50 open
    # 25,800 + 199 alone would pass; with the open 99.50 it cannot be paid, so it must not hold stock.
    second = client.post(
        "/v1/shoppers/s1/orders", json={"lines": [{"product_id": "p06", "quantity": 2}]}, headers=s1
    )
    assert second.status_code == 422 and second.json()["code"] == "annual_limit_exceeded"
    assert _stock(session_factory, "p06") == (5, 0)


def test_expiry_from_the_command_line(session_factory, tmp_path, monkeypatch):
    from crosscart.cli import app
    from crosscart.settings import get_settings

    with transaction(session_factory) as s:
        order = checkout(s, "s2", [CartLine("p05", 2)])
        order_id = order.order_id
    url = str(session_factory.kw["bind"].url)
    monkeypatch.setenv("CROSSCART_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        fresh = CliRunner().invoke(app, ["db", "expire-orders"])
        assert fresh.exit_code == 0 and "expired 0" in fresh.output, fresh.output
        _age(session_factory, 45)
        done = CliRunner().invoke(app, ["db", "expire-orders", "--ttl-minutes", "40"])
        assert done.exit_code == 0 and "expired 1" in done.output, done.output
    finally:
        get_settings.cache_clear()
    with session_factory() as s:
        assert s.get(Order, order_id).status == "cancelled"
    assert _stock(session_factory, "p05") == (5, 0)


# ---- concurrency, on SQLite and PostgreSQL (the `market` fixture of tests/commerce) ----


def _run(fns):
    barrier = threading.Barrier(len(fns))

    def call(fn):
        barrier.wait()
        try:
            return "ok", fn()
        except DomainError as exc:
            return "refused", exc.code

    with ThreadPoolExecutor(max_workers=len(fns)) as pool:
        return list(pool.map(call, fns))


def _shoppers(factory, n):
    with transaction(factory) as s:
        for i in range(n):
            shoppers.create_shopper(s, f"h{i}", "Shanghai")
            shoppers.register_identity(
                s, f"h{i}", f"H {i}", make_id_number(200 + i), keyring=Keyring(IDENTITY_KEY)
            )


def test_expiry_releases_exactly_once_under_concurrency(market):
    """Sweeps race each other and payments; every order ends either paid or expired, and stock, coupon
    uses and budget are given back exactly once per expired order."""
    _shoppers(market, 6)
    with transaction(market) as s:
        coupons.create_coupon(
            s, coupons.CouponInput(kind="amount_off", value="5", budget="100", usage_limit=50, coupon_id="cx")
        )
    ids = []
    for i in range(6):
        with transaction(market) as s:
            ids.append(checkout(s, f"h{i}", [CartLine("p_tea", 3)], coupon_id="cx", at=NOW).order_id)
    later = NOW + TTL + timedelta(minutes=1)

    def sweep():
        return expire_pending_orders(market, TTL, now=later)

    def pay(order_id):
        def go():
            with transaction(market) as s:
                return orders.pay_order(s, order_id, f"pay-{order_id}", at=later).order_id

        return go

    results = _run([sweep] * 6 + [pay(ids[0]), pay(ids[1])])
    expired = [oid for kind, r in results[:6] if kind == "ok" for oid in r]
    assert len(expired) == len(set(expired))  # no order expired twice
    paid = [r for kind, r in results[6:] if kind == "ok"]
    assert sorted(expired + paid) == sorted(ids)  # each order either expired or paid, never both
    with market() as s:
        statuses = {o.order_id: o.status for o in s.scalars(select(Order).where(Order.order_id.in_(ids)))}
        assert {oid for oid, st in statuses.items() if st == "cancelled"} == set(expired)
        cancels = s.scalar(
            select(func.count())
            .select_from(OrderStatusChange)
            .where(OrderStatusChange.order_id.in_(ids), OrderStatusChange.to_status == "cancelled")
        )
        assert cancels == len(expired)
        rows = s.scalars(select(Stock).where(Stock.product_id == "p_tea")).all()
        assert sum(r.reserved for r in rows) == 0
        assert sum(r.quantity for r in rows) == 200 - 3 * len(paid)
        coupon = s.get(Coupon, "cx")
        assert (coupon.used, coupon.spent) == (len(paid), Decimal("5.00") * len(paid))
        released = s.scalar(
            select(func.count())
            .select_from(CouponRedemption)
            .where(CouponRedemption.released_at.is_not(None))
        )
        assert released == len(expired)


def test_open_order_bound_holds_under_concurrency(market):
    _shoppers(market, 1)

    def place():
        with transaction(market) as s:
            return checkout(s, "h0", [CartLine("p_tea", 1)], at=NOW, max_open_pending=3).order_id

    results = _run([place] * 8)
    assert sorted(kind for kind, _ in results).count("ok") == 3
    assert {r for kind, r in results if kind == "refused"} == {"too_many_pending_orders"}
    with market() as s:
        open_orders = s.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.shopper_id == "h0", Order.status == "pending_payment")
        )
        assert open_orders == 3


def test_the_api_expires_orders_on_its_timer(make_client, keys, settings, session_factory):
    import time

    client = make_client(
        settings=settings.model_copy(update={"pending_sweep_seconds": 0.05}), start_background=True
    )
    r = client.post(
        "/v1/shoppers/s1/orders",
        json={"lines": [{"product_id": "p05", "quantity": 2}]},
        headers=auth(keys["shopper"]),
    )
    order_id = r.json()["order_id"]
    _age(session_factory, 31)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with session_factory() as s:
            if s.get(Order, order_id).status == "cancelled":
                break
        time.sleep(0.05)
    assert _stock(session_factory, "p05") == (5, 0)

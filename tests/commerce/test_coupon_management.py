"""Coupon management: edits only while nobody holds or has used the coupon, one validation rule set,
retirement, and edits racing redemptions (conditional UPDATEs) on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from commerce.coupons import Coupon
from commerce.db import transaction
from commerce.errors import InvalidState, ValidationError
from commerce.services import coupons
from crosscart.settings import get_settings
from tests.commerce.conftest import NOW
from tests.commerce.test_concurrency import run_concurrently


def _coupon(factory, coupon_id="c1", **terms):
    with transaction(factory) as s:
        data = {"kind": "amount_off", "value": "10", "coupon_id": coupon_id, **terms}
        coupons.create_coupon(s, coupons.CouponInput(**data))


def test_unused_coupon_edits_and_is_validated_like_a_new_one(market):
    _coupon(market)
    with transaction(market) as s:
        edited = coupons.update_coupon(s, "c1", kind="percent_off", value="0.15", cap="40", min_spend="100")
        assert (edited.kind, edited.value, edited.cap, edited.min_spend) == (
            "percent_off", Decimal("0.15"), Decimal("40.00"), Decimal("100.00")
        )  # fmt: skip
    with transaction(market) as s, pytest.raises(ValidationError, match="fraction"):
        coupons.update_coupon(s, "c1", value="15")  # 15 is not a percent fraction
    with transaction(market) as s, pytest.raises(ValidationError, match="cannot edit"):
        coupons.update_coupon(s, "c1", used=0)
    with transaction(market) as s:
        assert s.get(Coupon, "c1").value == Decimal("0.15")


NOT_NUMBERS = [("amount_off", "abc"), ("percent_off", "abc"), ("percent_off", "١٢"), ("amount_off", "1_0")]


def test_a_coupon_value_that_is_no_number_is_refused_by_name(market):
    """`Decimal(value)` said only `[<class 'decimal.ConversionSyntax'>]` (the CLI's whole error line), and
    read Unicode digits as a number. Each value in one marketplace: a refused create writes nothing."""
    for kind, value in NOT_NUMBERS:
        with (
            transaction(market) as s,
            pytest.raises(ValidationError, match=r"^value must be in ASCII digits"),
        ):
            coupons.create_coupon(s, coupons.CouponInput(kind=kind, value=value))


def test_a_coupon_id_that_could_run_as_a_formula_is_refused(market):
    """Each id in one marketplace: a refused create writes nothing (checked after each)."""
    for coupon_id in ["=1+1", "+1", "-CP10", "@SUM(A1)", "\tc", "\rc", " =1", "c\n1", "x" * 65]:
        with pytest.raises(ValidationError, match="starting with a letter, digit or _"):
            _coupon(market, coupon_id)
        with transaction(market) as s:
            assert s.get(Coupon, coupon_id) is None, coupon_id


def test_ordinary_coupon_ids_are_accepted(market):
    """All in one marketplace: none of these ids is another's look-alike, so each is accepted beside the
    others as on its own."""
    for coupon_id in ["c1", "C-10off", "_x", "cmp:7.a", "c-10off?x", "春季-10", "a b"]:
        _coupon(market, coupon_id)
        with transaction(market) as s:
            assert s.get(Coupon, coupon_id).coupon_id == coupon_id


@pytest.mark.parametrize("use", ["grant", "redeem"])
def test_granted_or_used_coupon_cannot_be_edited_but_retires(market, use):
    _coupon(market)
    with transaction(market) as s:
        if use == "grant":
            coupons.grant_coupon(s, "c1", ["s0"])
        else:
            coupons.redeem(s, "c1", "s0", Decimal("10"))
    with transaction(market) as s, pytest.raises(InvalidState) as refused:
        coupons.update_coupon(s, "c1", value="20")
    assert refused.value.code == "coupon_in_use"
    with transaction(market) as s:
        retired = coupons.end_coupon(s, "c1", at=NOW)
        assert retired.ends_at == NOW and retired.value == Decimal("10.00")
    with transaction(market) as s, pytest.raises(ValidationError) as expired:
        coupons.check_usable(s, s.get(Coupon, "c1"), "s1", NOW)
    assert expired.value.code == "coupon_expired"


def test_edits_racing_redemptions_never_change_a_used_coupon(market):
    """Half the workers redeem, half edit the value: once a redemption has committed no edit lands, so
    the final value is the one every later redemption was taken under."""
    _coupon(market, usage_limit=100, per_shopper_limit=100)

    def work(i):
        with transaction(market) as s:
            if i % 2:
                coupons.redeem(s, "c1", f"s{i % 3}", Decimal("0"))
                return ("redeemed", None)
            return ("edited", coupons.update_coupon(s, "c1", value=str(20 + i)).value)

    ok, refused = run_concurrently(work, n=20)
    assert set(refused) <= {"coupon_in_use"}
    redeemed = sum(1 for kind, _ in ok if kind == "redeemed")
    assert redeemed == 10
    with transaction(market) as s:
        coupon = s.get(Coupon, "c1")
        assert coupon.used == redeemed
        edits = [v for kind, v in ok if kind == "edited"]
        assert (coupon.value in edits) if edits else coupon.value == Decimal("10.00")
        with pytest.raises(InvalidState):
            coupons.update_coupon(s, "c1", value="99")


def test_cli_create_list_show_edit_retire(market, database_url, monkeypatch, tmp_path):
    import json

    from crosscart.cli import app

    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        made = runner.invoke(app, ["coupon", "create", "--kind", "percent_off", "--value", "0.2", "--cap",
                                   "30", "--scope", "category:beauty", "--budget", "500", "--usage-limit",
                                   "10", "--id", "cli1", "--name", "Beauty 20%"])  # fmt: skip
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout)["scope_id"] == "beauty"
        assert [c["coupon_id"] for c in json.loads(runner.invoke(app, ["coupon", "list"]).stdout)] == ["cli1"]
        edited = runner.invoke(app, ["coupon", "edit", "cli1", "--min-spend", "199"])
        assert edited.exit_code == 0, edited.output
        assert json.loads(runner.invoke(app, ["coupon", "show", "cli1"]).stdout)["min_spend"] == "199.00"
        bad = runner.invoke(app, ["coupon", "edit", "cli1", "--value", "3"])
        assert bad.exit_code == 2 and "fraction" in bad.output
        with transaction(market) as s:
            coupons.grant_coupon(s, "cli1", ["s0"])
        refused = runner.invoke(app, ["coupon", "edit", "cli1", "--min-spend", "1"])
        assert refused.exit_code == 2 and "granted or used" in refused.output
        retired = runner.invoke(app, ["coupon", "retire", "cli1"])
        assert retired.exit_code == 0 and json.loads(retired.stdout)["ends_at"] is not None
        with transaction(market) as s:
            assert s.scalar(select(Coupon.min_spend).where(Coupon.coupon_id == "cli1")) == Decimal("199.00")
    finally:
        get_settings.cache_clear()

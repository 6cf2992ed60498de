"""`crosscart db renormalise`: coupon ids and experiment, layer and variant names stored before round 6
normalised them are rewritten to their normal form with every row that names them (lookups read only
that form now), except where the form is taken: those are reported and left as they are."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from commerce.campaigns import CampaignMember
from commerce.coupons import Coupon, CouponGrant, CouponRedemption, CouponShopperUsage
from commerce.db import transaction
from commerce.errors import ValidationError
from commerce.events import BehaviorEvent
from commerce.experiments import Experiment, ExperimentExposure, ExperimentLayer, ExperimentVariant
from commerce.services.campaigns import CampaignInput, create_campaign
from commerce.services.coupons import CouponInput, create_coupon, get_coupon, grant_audience
from commerce.services.experiments import get_experiment
from commerce.sqltypes import SKELETON, skeleton
from crosscart.cli.db import app
from crosscart.cli.doctor import _stored_names
from crosscart.settings import Settings, get_settings
from tests.commerce.conftest import NOW

OLD = "\uff4f\uff4c\uff44-\uff11"  # ｏｌｄ-１, stored before ids were normalised; its form is old-1
LONG = "k" * 62 + "\u337f"  # ㍿ is 株式会社 in NFKC: 66 characters, more than a coupon id holds


def _coupon(coupon_id: str, **fields) -> Coupon:
    return Coupon(coupon_id=coupon_id, kind="amount_off", value=Decimal("5"), **fields)


def _seed_old_names(factory) -> None:
    """Rows as a database from before round 6 could hold them (the rules that refuse them bypassed)."""
    from datetime import timedelta

    with transaction(factory) as s:
        create_campaign(
            s, CampaignInput("Old", "email", "100", NOW, NOW + timedelta(days=7), campaign_id="cmp-old")
        )
        s.add_all([
            _coupon(OLD, campaign_id="cmp-old", requires_grant=True, used=1, spent=Decimal("5")),
            _coupon("DUP"), _coupon("\uff24\uff35\uff30"),  # ＤＵＰ beside DUP
            _coupon("x\u20101"), _coupon("\uff58-1"),  # x‐1 (U+2010) and ｘ-1: both are x-1
            _coupon(LONG),
        ])  # fmt: skip
        s.flush()
        probabilities = {OLD: 0.5, "control": 0.5}
        s.add_all(
            CampaignMember(campaign_id="cmp-old", shopper_id=shopper, arm=arm, coupon_id=coupon,
                           arm_probabilities=probabilities)
            for shopper, arm, coupon in (("s0", OLD, OLD), ("s1", "control", None))
        )  # fmt: skip
        grant_audience(s, OLD, ["s0"], campaign_id="cmp-old", channel="email", at=NOW)
        s.add(CouponShopperUsage(coupon_id=OLD, shopper_id="s0", used=1))
        s.add(CouponRedemption(coupon_id=OLD, shopper_id="s0", amount=Decimal("5")))
        layer = ExperimentLayer(
            name="\uff48\uff4f\uff4d\uff45", salt="layer:\uff48\uff4f\uff4d\uff45:1"
        )  # ｈｏｍｅ
        variants = [ExperimentVariant(name=n, weight=1.0, position=i) for i, n in enumerate(["\uff41", "b"])]
        promo = Experiment(name="\uff50\uff52\uff4f\uff4d\uff4f", salt="\uff50\uff52\uff4f\uff4d\uff4f",
                           layer=layer, status="running", variants=variants)  # fmt: skip
        twins = [ExperimentVariant(name=n, weight=1.0, position=i) for i, n in enumerate(["c", "\uff43"])]
        s.add_all(
            [promo, Experiment(name="X", salt="X"), Experiment(name="\uff38", salt="\uff38", variants=twins)]
        )
        s.flush()
        s.add(ExperimentExposure(experiment_id=promo.id, variant="\uff41", unit_id="s0", ts=NOW))


def _run(database_url: str, monkeypatch, tmp_path, *args: str):
    monkeypatch.setenv("CROSSCART_DATABASE_URL", database_url)
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["renormalise", *args])
    finally:
        get_settings.cache_clear()


LEFT = [
    "coupon 'x‐1': left as it is ('ｘ-1' has the same normal form 'x-1')",
    "coupon 'ｘ-1': left as it is ('x‐1' has the same normal form 'x-1')",
    "coupon 'ＤＵＰ': left as it is ('DUP' is stored already)",
    "experiment 'Ｘ': left as it is ('X' is stored already)",
    "variant of experiment 'Ｘ' 'ｃ': left as it is ('c' is stored already)",
    f"coupon {LONG!r}: left as it is (its normal form {'k' * 62 + '株式会社'!r} is empty or longer than 64",
]


def test_renormalise_rewrites_old_names_with_their_references(market, database_url, monkeypatch, tmp_path):
    _seed_old_names(market)
    dry = _run(database_url, monkeypatch, tmp_path, "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert "coupon 'ｏｌｄ-１' -> 'old-1'" in dry.output and "layer 'ｈｏｍｅ' -> 'home'" in dry.output
    assert "variant of experiment 'ｐｒｏｍｏ' 'ａ' -> 'a'" in dry.output
    assert all(line in dry.output for line in LEFT), dry.output
    assert dry.output.strip().endswith("10 names not in normal form, 0 renormalised, 10 left")
    with transaction(market) as s:
        assert s.get(Coupon, OLD) is not None and s.get(Coupon, "old-1") is None  # --dry-run changed nothing

    done = _run(database_url, monkeypatch, tmp_path)
    assert done.exit_code == 1 and all(line in done.output for line in LEFT), done.output
    assert done.output.strip().endswith("10 names not in normal form, 4 renormalised, 6 left")
    with transaction(market) as s:
        assert s.get(Coupon, OLD) is None
        coupon = get_coupon(s, OLD)  # every spelling finds it now
        assert (coupon.coupon_id, coupon.campaign_id, coupon.used, coupon.spent) == ("old-1", "cmp-old", 1, 5)
        for model in (CouponGrant, CouponShopperUsage, CouponRedemption, BehaviorEvent):
            assert set(s.scalars(select(model.coupon_id).where(model.shopper_id == "s0"))) == {"old-1"}, model
        members = {m.shopper_id: m for m in s.scalars(select(CampaignMember))}
        assert (members["s0"].arm, members["s0"].coupon_id) == ("old-1", "old-1")
        assert members["s1"].arm_probabilities == {"old-1": 0.5, "control": 0.5}
        promo = get_experiment(s, "promo")
        assert (promo.salt, promo.layer.name, promo.layer.salt) == ("ｐｒｏｍｏ", "home", "layer:ｈｏｍｅ:1")
        assert [v.name for v in promo.variants] == ["a", "b"]
        assert s.scalar(select(ExperimentExposure.variant)) == "a"
        for unchanged in ("DUP", "\uff24\uff35\uff30", "x\u20101", "\uff58-1", LONG):
            assert s.get(Coupon, unchanged) is not None
        assert (
            s.scalar(select(func.count()).select_from(Experiment).where(Experiment.name.in_(["X", "Ｘ"])))
            == 2
        )
        for column in (Coupon.coupon_id, Experiment.name, ExperimentLayer.name):  # look-alike lookups
            rows = s.execute(select(column, getattr(column.class_, column.key + SKELETON))).all()
            assert [(name, key) for name, key in rows if key != skeleton(name)] == [], str(column)

    again = _run(database_url, monkeypatch, tmp_path, "--dry-run")
    assert again.output.strip().endswith("6 names not in normal form, 0 renormalised, 6 left"), again.output


def test_doctor_warns_of_names_no_lookup_finds(market, database_url, tmp_path):
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    assert [c.status for c in _stored_names(settings)] == ["ok"]
    _seed_old_names(market)
    (check,) = _stored_names(settings)
    assert check.status == "warn" and check.detail.startswith("10 not in normal form")
    assert "crosscart db renormalise --dry-run" in check.fix


def test_renormalise_recomputes_skeletons_icu_no_longer_gives(market, database_url, monkeypatch, tmp_path):
    """A stored skeleton other than ICU's now (its confusables changed with a PyICU upgrade) hides the
    name from the look-alike check; renormalise lists it with --dry-run and stores the right one."""
    with transaction(market) as s:
        s.add(_coupon("PAY"))
        s.flush()
        s.execute(update(Coupon).values(coupon_id_skeleton="P4Y"))  # as older ICU data gave it
    dry = _run(database_url, monkeypatch, tmp_path, "--dry-run")
    assert dry.exit_code == 1 and "Coupon.coupon_id 'PAY': skeleton 'PAY' to store" in dry.output, dry.output
    assert dry.output.strip().endswith("1 stored skeletons out of date")
    done = _run(database_url, monkeypatch, tmp_path)
    assert done.exit_code == 0 and done.output.strip().endswith("out of date, recomputed"), done.output
    with pytest.raises(ValidationError, match="looks like the existing 'PAY'"), transaction(market) as s:
        create_coupon(s, CouponInput(kind="amount_off", value="5", coupon_id="\u0420\u0410\u0423"))  # РАУ


def test_renormalise_recomputes_a_stock_locations_skeleton(market, database_url, monkeypatch, tmp_path):
    """A stock location's id keeps its skeleton too (`0041_location_skeletons`): one ICU no longer gives
    hid the location from the look-alike check, and renormalise did not list it (only names and other
    ids); it now lists and recomputes it, and Cyrillic `НН-1` is then refused beside `HH-1`."""
    from commerce.logistics import Warehouse
    from commerce.services.catalog import register_location

    with transaction(market) as s:
        register_location(s, "HH-1", "bonded", "m_ok")
        s.execute(
            update(Warehouse).where(Warehouse.warehouse_id == "HH-1").values(warehouse_id_skeleton="H4")
        )
    dry = _run(database_url, monkeypatch, tmp_path, "--dry-run")
    assert f"Warehouse.warehouse_id 'HH-1': skeleton {skeleton('HH-1')!r} to store" in dry.output, dry.output
    assert dry.exit_code == 1 and dry.output.strip().endswith("1 stored skeletons out of date")
    done = _run(database_url, monkeypatch, tmp_path)
    assert done.exit_code == 0 and done.output.strip().endswith("out of date, recomputed"), done.output
    with pytest.raises(ValidationError, match="looks like the existing 'HH-1'"), transaction(market) as s:
        register_location(s, "\u041d\u041d-1", "bonded", "m_ok")


def test_a_coupon_whose_normal_form_is_control_is_left_as_it_is(market):
    """`ｃｏｎｔｒｏｌ` rewritten to `control` would turn the shoppers its campaign gives it into the
    holdout (the arm of that name): it is reported and left, as the coupon id rule refuses `control`."""
    from datetime import timedelta

    from commerce.services.renormalise import renormalise

    wide = "\uff43\uff4f\uff4e\uff54\uff52\uff4f\uff4c"  # ｃｏｎｔｒｏｌ
    with transaction(market) as s:
        create_campaign(
            s, CampaignInput("Old", "email", "100", NOW, NOW + timedelta(days=7), campaign_id="cmp-ctl")
        )
        s.add(_coupon(wide, campaign_id="cmp-ctl", requires_grant=True))
        s.flush()
        s.add(CampaignMember(campaign_id="cmp-ctl", shopper_id="s0", arm=wide, coupon_id=wide))
    with transaction(market) as s:
        (found,) = renormalise(s)
    assert not found.safe and found.describe().endswith("('control' names a campaign's holdout arm)")
    with transaction(market) as s:
        assert s.get(Coupon, wide) is not None and s.get(Coupon, "control") is None
        assert s.scalar(select(CampaignMember.arm).where(CampaignMember.campaign_id == "cmp-ctl")) == wide


def test_chosen_ids_not_in_normal_form_are_listed_and_kept(market, database_url, monkeypatch, tmp_path):
    """A merchant, product or campaign id stored in another form than `chosen_id` stores is listed (dry
    run, renormalise, doctor) and left as it is: models, features, search indexes and keys name it too.
    Its stored skeleton is recomputed like a name's."""
    from datetime import timedelta

    from commerce.catalog import Product
    from commerce.merchants import Merchant

    wide = "\uff50\uff19"  # ｐ９
    with transaction(market) as s:
        s.add(Merchant(merchant_id="m_old ", name="Old", country="JP", licence_no="L-old"))
        old = dict(sku="SKU-old", merchant_id="m_ok", title="T", category_id="food", brand="Acme")
        s.add(Product(product_id=wide, origin_country="JP", price=Decimal("1"), fulfillment="bonded", **old))
        create_campaign(s, CampaignInput("C", "email", "100", NOW, NOW + timedelta(days=7), campaign_id="k1"))
        s.flush()
        s.execute(update(Product).where(Product.product_id == "p_tea").values(product_id_skeleton="stale"))
    why = "by hand: models, features and keys name it too"
    kept = [
        f"merchant 'm_old ': left as it is (rename it to 'm_old' {why})",
        f"product 'ｐ９': left as it is (rename it to 'p9' {why})",
    ]
    dry = _run(database_url, monkeypatch, tmp_path, "--dry-run")
    assert dry.exit_code == 1 and all(k in dry.output for k in kept), dry.output
    assert "Product.product_id 'p_tea': skeleton 'p_tea' to store" in dry.output
    assert dry.output.strip().endswith(
        "2 names not in normal form, 0 renormalised, 2 left\n1 stored skeletons out of date"
    )
    done = _run(database_url, monkeypatch, tmp_path)
    assert done.exit_code == 1 and all(k in done.output for k in kept), done.output
    with market() as s:
        assert s.get(Product, wide) is not None and s.get(Merchant, "m_old ") is not None
        assert s.scalar(select(Product.product_id_skeleton).where(Product.product_id == "p_tea")) == "p_tea"
    (check,) = _stored_names(Settings(database_url=database_url, data_dir=tmp_path))
    assert check.status == "warn" and check.detail.startswith("2 not in normal form")


def test_a_chosen_id_whose_normal_form_is_taken_is_not_to_be_renamed_to_it():
    """`ｐ１` beside `p1`: the listing advised renaming it to `p1` by hand, an id another row holds."""
    from commerce.services.renormalise import Rename

    wide = Rename("product", "\uff50\uff11", "\uff50\uff11", "p1", clash=("p1",))
    assert wide.describe() == "product 'ｐ１': left as it is ('p1' is stored already)"
    alike = Rename("merchant", "m1 ", "m1 ", "m1", clash=("\uff4d1",))
    assert alike.describe() == "merchant 'm1 ': left as it is ('ｍ1' has the same normal form 'm1')"

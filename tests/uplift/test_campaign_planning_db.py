"""Planning a stored campaign from the database: shopper history features (the same as in training),
effects from a fitted or registered model, the campaign's amount-off and percent-off coupons."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import make_url

import commerce.all_models  # noqa: F401  (complete metadata)
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.errors import InvalidState
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon, grant_coupon
from commerce.services.events import export_events, record_events
from commerce.services.shoppers import create_shopper
from features.campaign_features import NUMERIC_FEATURES, encode_features, shopper_history_features
from marketing.contact_policy import ContactPolicy
from marketing.planning import effect_model, plan_and_store
from models.uplift.effects import CouponEffectModel, ServedCouponUplift
from training.registry import ModelUnavailable
from training.uplift import load_uplift_model

START = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_history_features_use_only_events_before_the_start():
    shoppers = pd.DataFrame(
        {
            "shopper_id": ["S1", "S2"],
            "region": ["Shanghai", "Beijing"],
            "segment": [None, "value"],
            "created_at": [START - 400 * DAY, START - 20 * DAY],
        }
    )
    events = pd.DataFrame(
        [
            (START - 10 * DAY, "S1", "purchase", 100.0),
            (START - 100 * DAY, "S1", "purchase", 50.0),  # outside 90 days: recency only
            (START - 5 * DAY, "S1", "view", 0.0),
            (START - 40 * DAY, "S1", "cart", 0.0),  # outside 30 days
            (START - 200 * DAY, "S1", "coupon_redeem", 0.0),
            (START + 1 * DAY, "S1", "purchase", 999.0),  # during the campaign: must not leak
            (START + 1 * DAY, "S2", "view", 0.0),
        ],
        columns=["ts", "shopper_id", "event_type", "value"],
    )
    f = shopper_history_features(events, shoppers, START, "email")
    assert f.loc["S1", list(NUMERIC_FEATURES)].tolist() == [10.0, 0.0, 1.0, 100.0, 1.0, 0.0, 1.0, 400.0]
    assert f.loc["S2", list(NUMERIC_FEATURES)].tolist() == [1095.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0]
    assert f.loc["S2", "segment"] == "value" and f.loc["S1", "segment"] == "unknown"
    X = encode_features(f, ["recency_days", *NUMERIC_FEATURES[1:], "region_Shanghai", "region_Tokyo"])
    assert X["region_Shanghai"].tolist() == [1.0, 0.0] and X["region_Tokyo"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="not trained on"):
        encode_features(f, ["region_Shanghai"])


def _effect_model(kinds=("amount_off", "percent_off")) -> CouponEffectModel:
    """Past campaigns where coupons lift only recent buyers (0.05 -> 0.45); baskets ~200 CNY."""
    rng = np.random.default_rng(0)
    n = 3000
    recency = rng.choice([5.0, 1095.0], n)
    table = pd.DataFrame(
        {
            "recency_days": recency,
            "never_bought": (recency > 1000).astype(float),
            "frequency_90d": (recency < 1000) * rng.integers(1, 4, n).astype(float),
            "monetary_90d": (recency < 1000) * rng.uniform(100, 300, n),
            "views_30d": rng.poisson(3, n).astype(float),
            "carts_30d": rng.poisson(1, n).astype(float),
            "coupons_redeemed_before": rng.poisson(0.3, n).astype(float),
            "tenure_days": rng.uniform(30, 900, n),
            "region": rng.choice(["Shanghai", "Beijing"], n),
            "segment": "unknown",
            "channel": "email",
        }
    )
    arm = rng.choice(["control", *kinds], n)
    p = 0.05 + 0.4 * ((arm != "control") & (recency < 1000))
    converted = (rng.random(n) < p).astype(int)
    spend = converted * rng.uniform(150, 250, n)
    return CouponEffectModel(learner="t-lr", random_state=0).fit(
        encode_features(table), arm, converted, spend
    )


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory) -> Path:
    """`_seed`'s SQLite database, made once for the module; `factory` copies it for each test."""
    path = tmp_path_factory.mktemp("planning-template") / "planning.db"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    _seed(make_session_factory(engine))
    engine.dispose()  # the last connection's close checkpoints the WAL into the file
    return path


@pytest.fixture
def factory(database_url, sqlite_template):
    if database_url.startswith("sqlite"):
        shutil.copy(sqlite_template, make_url(database_url).database)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    if engine.dialect.name != "sqlite":
        Base.metadata.create_all(engine)
        _seed(factory)
    yield factory
    engine.dispose()


def _seed(factory) -> None:
    """Shoppers S00..S39 (even ones bought last week), their views, campaign CMP-P with coupons A10, P5."""
    with transaction(factory) as s:
        events = []
        for i in range(40):
            region = "Shanghai" if i < 30 else "Beijing"
            create_shopper(s, f"S{i:02d}", region)
            if i % 2 == 0:  # even shoppers bought last week: the persuadable ones
                events.append(
                    {"event_id": f"e{i}", "ts": START - 7 * DAY, "shopper_id": f"S{i:02d}",
                     "product_id": "P1", "event_type": "purchase", "value": 180.0}
                )  # fmt: skip
            for age in (5, 60, -2):  # a recent view, an old one, one during the campaign
                events.append(
                    {"event_id": f"v{i}_{age}", "ts": START - age * DAY, "shopper_id": f"S{i:02d}",
                     "product_id": "P1", "event_type": "view"}
                )  # fmt: skip
        record_events(s, events)
        cmp.create_campaign(
            s, cmp.CampaignInput("Spring", "email", "60", START, START + 7 * DAY, "0.2", campaign_id="CMP-P")
        )
        create_coupon(
            s,
            CouponInput(
                kind="amount_off", value="10", campaign_id="CMP-P", requires_grant=True, coupon_id="A10"
            ),
        )
        create_coupon(
            s,
            CouponInput(
                kind="percent_off",
                value="0.05",
                cap="8",
                campaign_id="CMP-P",
                requires_grant=True,
                coupon_id="P5",
            ),
        )


def test_plan_from_database_targets_persuadable_shoppers_within_budget(factory, tmp_path):
    model = _effect_model()
    plan = plan_and_store(factory, "CMP-P", model=model, region="Shanghai", margin_rate=0.5)
    members = plan.assignments
    recent = {f"S{i:02d}" for i in range(0, 30, 2)}  # the recent buyers of Shanghai
    assert recent <= set(members["shopper_id"]) <= {f"S{i:02d}" for i in range(30)}  # Shanghai only
    persuadable = members["shopper_id"].isin(recent)
    assert members.loc[persuadable, "inc_conversions"].min() > 0.2  # learned: 0.05 -> 0.45
    assert (members.loc[~persuadable, "inc_conversions"] < 0.1).all()  # leftover budget only
    assert len(members) >= 4 and (members["arm"] == "control").sum() >= 1
    # P5 costs min(8, 5% x ~200) <= 8 < 10 for the same learned effect: the planner prefers it
    assert set(members["arm"]) <= {"P5", "A10", "control"} and (members["arm"] == "P5").any()
    assert members["cost"].sum() <= 60 / (1 - 0.2) + 1e-9  # treated part spends the budget on average
    assert plan.summary["expected_incremental_profit"] > 0
    with transaction(factory) as s:
        stored = {m["shopper_id"]: m["arm"] for m in cmp.audience(s, "CMP-P")}
    assert stored == dict(zip(members["shopper_id"], members["arm"], strict=True))
    # the same features from an exported events Parquet give the same plan
    with transaction(factory) as s:
        export_events(s, tmp_path / "events")
    again = plan_and_store(
        factory, "CMP-P", model=model, region="Shanghai", margin_rate=0.5, events_path=tmp_path / "events"
    )
    pd.testing.assert_frame_equal(again.assignments, plan.assignments)


def test_plan_from_database_refuses_what_it_cannot_price(factory):
    with pytest.raises(ValueError, match="learned no \\['percent_off'\\]"):
        plan_and_store(factory, "CMP-P", model=_effect_model(kinds=("amount_off",)))
    with pytest.raises(ValueError, match="no shoppers"):
        plan_and_store(factory, "CMP-P", model=_effect_model(), region="Atlantis")
    with transaction(factory) as s:
        cmp.create_campaign(
            s, cmp.CampaignInput("Bare", "site", "10", START, START + DAY, "0.1", campaign_id="CMP-0")
        )
    with pytest.raises(ValueError, match="no coupon to offer"):
        plan_and_store(factory, "CMP-0", model=_effect_model())
    with transaction(factory) as s:
        cmp.set_audience(s, "CMP-P", [("S00", "A10"), ("S01", "control")])
        cmp.schedule_campaign(s, "CMP-P")
    with pytest.raises(InvalidState, match="only a draft"):
        plan_and_store(factory, "CMP-P", model=_effect_model())
    own = pd.DataFrame(
        {"shopper_id": ["S00"], "coupon_id": ["A10"], "p_control": [0.1], "p_treated": [0.5],
         "spend_control": [20.0], "spend_treated": [100.0]}
    )  # fmt: skip
    with pytest.raises(InvalidState, match="only a draft"):  # the caller's own effects: refused too
        plan_and_store(factory, "CMP-P", candidates=own)
    with pytest.raises(ValueError, match="either an effect model or a candidates table"):
        plan_and_store(factory, "CMP-P", model=_effect_model(), candidates=own)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_missing_registered_model_is_a_clear_error(factory, tracking_uri):
    uri = tracking_uri
    with pytest.raises(ModelUnavailable, match="no uplift model registered as crosscart-uplift@champion"):
        load_uplift_model(uri, "crosscart-uplift", "champion")
    with pytest.raises(ModelUnavailable, match="crosscart train uplift"):
        effect_model(tracking_uri=uri, name="crosscart-uplift", alias="champion")


def test_served_uplift_answers_the_api_contract():
    model = _effect_model()
    shoppers = pd.DataFrame(
        {"shopper_id": ["R", "L"], "region": "Shanghai", "segment": None, "created_at": START - 100 * DAY}
    )
    events = pd.DataFrame(
        [(START - 3 * DAY, "R", "purchase", 200.0)], columns=["ts", "shopper_id", "event_type", "value"]
    )
    cols = list(model.feature_names_in_)
    features = encode_features(shopper_history_features(events, shoppers, START, "email"), cols)
    served = ServedCouponUplift(model, features.loc["L"].to_numpy(), {"A10": "amount_off"})
    frame = pd.DataFrame(
        {
            "shopper_id": ["R", "R", "nobody", "R"],
            "coupon_id": ["A10", "NEW", "A10", "X"],
            "kind": [None, None, None, "percent_off"],
        }
    )
    # the caller passes each row's current features; the unknown shopper has none
    frame = frame.join(features.reindex(frame["shopper_id"]).reset_index(drop=True))
    assert 0.05 < model.basket_sigma_ < 0.3  # baskets of 150..250 CNY: log-scale sd ~0.15
    got = served.predict(frame)
    effects = model.predict_uplift(features)  # rows R, L; columns amount_off, percent_off
    assert list(model.arms_) == ["amount_off", "percent_off"]
    assert got[0] == pytest.approx(effects[0, 0])  # known coupon -> its kind's uplift
    assert got[1] == pytest.approx(effects[0].mean())  # unknown coupon, no kind -> mean over kinds
    assert got[2] == pytest.approx(effects[1, 0])  # unknown shopper -> the no-history profile (L)
    assert got[3] == pytest.approx(effects[0, 1])  # the row's kind wins over the lookup
    assert got[0] > 0.2 > got[2]  # the recent buyer is the persuadable one
    with pytest.raises(ValueError, match="coupon_id"):
        served.predict(frame[["shopper_id"]])


@pytest.mark.slow
def test_effect_model_finds_the_true_ranking_on_the_demo_marketplace(tmp_path):
    """At demo scale (the tiny one has too few conversions) the held-out ranking follows the truth."""
    from features.campaign_features import campaign_training_table
    from features.synth import generate_marketplace
    from training.uplift import fit_effect_model

    generate_marketplace(tmp_path / "m", "demo", seed=7)
    model, held_out = fit_effect_model(tmp_path / "m", learner="x", test_size=0.3, seed=42)
    _, labels = campaign_training_table(tmp_path / "m")
    truth = pd.read_parquet(tmp_path / "m" / "truth" / "coupon_effects.parquet")
    true = truth.groupby(["campaign_id", "shopper_id"])["true_uplift"].mean()
    rows = labels.iloc[held_out["rows"]]
    true = true.reindex(pd.MultiIndex.from_frame(rows[["campaign_id", "shopper_id"]])).to_numpy()
    assert np.corrcoef(held_out["uplift"], true)[0, 1] > 0.4  # measured 0.59
    assert held_out["metrics"]["qini_auc"] > 0.02  # measured 0.045; the truth's own ranking: 0.121
    assert held_out["metrics"]["uplift@30"] > 0.03  # measured 0.064; truth: 0.097


def _running(session, campaign_id, coupon_id, start, end, treated="S39"):
    """A running campaign treating one shopper (no candidate), whose coupon can then be given by hand."""
    cmp.create_campaign(session, cmp.CampaignInput(campaign_id, "site", "10", start, end, "0", campaign_id))
    create_coupon(
        session,
        CouponInput(
            kind="amount_off", value="5", campaign_id=campaign_id, requires_grant=True, coupon_id=coupon_id
        ),
    )
    cmp.set_audience(session, campaign_id, [(treated, coupon_id)])
    cmp.schedule_campaign(session, campaign_id, at=start - DAY, contact_policy=None)
    cmp.start_campaign(session, campaign_id, at=start)


def test_contact_policy_leaves_out_live_coupon_holders_and_capped_shoppers(factory):
    """S00 is treated by an overlapping scheduled campaign (a live coupon); S02 is only in its
    holdout (no coupon: still eligible); S04 got three campaign coupons in the last four weeks
    (the cap; by hand, from running campaigns one after another); S06 got two. A draft or
    non-overlapping campaign does not block anyone."""
    with transaction(factory) as s:
        cmp.create_campaign(
            s,
            cmp.CampaignInput(
                "Live", "site", "10", START + 3 * DAY, START + 9 * DAY, "0.1", campaign_id="CMP-L"
            ),
        )
        create_coupon(
            s,
            CouponInput(
                kind="amount_off", value="5", campaign_id="CMP-L", requires_grant=True, coupon_id="L5"
            ),
        )
        cmp.set_audience(s, "CMP-L", [("S00", "L5"), ("S02", "control")])
        cmp.schedule_campaign(s, "CMP-L")
        cmp.create_campaign(
            s,
            cmp.CampaignInput(
                "Later", "site", "10", START + 8 * DAY, START + 9 * DAY, "0", campaign_id="CMP-X"
            ),
        )
        create_coupon(
            s,
            CouponInput(
                kind="amount_off", value="5", campaign_id="CMP-X", requires_grant=True, coupon_id="X5"
            ),
        )
        cmp.set_audience(s, "CMP-X", [("S08", "X5")])
        cmp.schedule_campaign(s, "CMP-X")  # starts after CMP-P ends: no overlap
        for k, age in enumerate((3, 10, 20, 40)):  # the 40-day-old grant is outside the window
            _running(s, f"CMP-{k}", f"O{k}", START - (age + 1) * DAY, START - (age - 1) * DAY, f"S3{k}")
            grant_coupon(s, f"O{k}", ["S04"] + (["S06"] if k < 2 else []),
                         at=START - age * DAY)  # fmt: skip
    ids = [f"S{i:02d}" for i in range(10)]
    own = pd.DataFrame(
        {"shopper_id": ids, "coupon_id": "A10", "p_control": 0.1, "p_treated": 0.5,
         "spend_control": 20.0, "spend_treated": 100.0}
    )  # fmt: skip
    plan = plan_and_store(factory, "CMP-P", candidates=own, margin_rate=0.9)
    planned = set(plan.assignments["shopper_id"])
    assert planned.isdisjoint({"S00", "S04"})
    assert {"S02", "S06", "S08"} <= planned
    assert plan.summary["excluded"] == {"live_coupon": 1, "frequency_cap": 1}
    plan = plan_and_store(factory, "CMP-P", candidates=own, margin_rate=0.9, contact_policy=None)
    assert {"S00", "S04"} <= set(plan.assignments["shopper_id"])
    plan = plan_and_store(
        factory, "CMP-P", candidates=own, margin_rate=0.9, contact_policy=ContactPolicy(frequency_cap=2)
    )
    assert set(plan.assignments["shopper_id"]).isdisjoint({"S00", "S04", "S06"})
    with pytest.raises(ValueError, match="at least 1"):
        ContactPolicy(frequency_cap=0)


def test_frequency_cap_counts_the_coupons_scheduled_campaigns_will_grant(factory):
    """Planned weeks ahead: campaigns scheduled before CMP-P (not started, so nothing granted yet)
    starting 20 days before it and 10 days after (it counts as much as an earlier one) each treat S04
    and S06, S06 also got a coupon last week: S06 reaches the cap of 3, S04 does not; one starting 30
    days after CMP-P is too far to count."""
    with transaction(factory) as s:
        for k, start in enumerate((START - 20 * DAY, START + 10 * DAY, START + 30 * DAY)):
            cid = f"CMP-S{k}"
            cmp.create_campaign(
                s, cmp.CampaignInput(cid, "site", "10", start, start + 2 * DAY, "0", campaign_id=cid)
            )
            create_coupon(
                s,
                CouponInput(
                    kind="amount_off", value="5", campaign_id=cid, requires_grant=True, coupon_id=f"S{k}5"
                ),
            )
            cmp.set_audience(s, cid, [("S04", f"S{k}5"), ("S06", f"S{k}5")])
            cmp.schedule_campaign(s, cid)
        _running(s, "CMP-O", "OO", START - 9 * DAY, START - 6 * DAY)
        grant_coupon(s, "OO", ["S06"], at=START - 7 * DAY)
    own = pd.DataFrame(
        {"shopper_id": ["S04", "S06", *(f"S{i}" for i in range(10, 20))], "coupon_id": "A10",
         "p_control": 0.1, "p_treated": 0.5, "spend_control": 20.0, "spend_treated": 100.0}
    )  # fmt: skip
    plan = plan_and_store(factory, "CMP-P", candidates=own, margin_rate=0.9)
    assert plan.summary["excluded"] == {"live_coupon": 0, "frequency_cap": 1}
    assert "S06" not in set(plan.assignments["shopper_id"]) and "S04" in set(plan.assignments["shopper_id"])


def test_a_plan_too_small_for_its_holdout_is_refused_not_stored(factory):
    """One candidate in a campaign with a 20% holdout: the planner holds out nobody, so the plan could
    never be scheduled (nor measured); planning refuses it with scheduling's error and keeps the
    draft's audience as it was."""
    from commerce.errors import ValidationError

    with transaction(factory) as s:
        cmp.set_audience(s, "CMP-P", [("S00", "A10"), ("S01", "control")])
    one = pd.DataFrame(
        {"shopper_id": ["S02"], "coupon_id": ["A10"], "p_control": [0.1], "p_treated": [0.5],
         "spend_control": [20.0], "spend_treated": [100.0]}
    )  # fmt: skip
    with pytest.raises(ValidationError) as err:
        plan_and_store(factory, "CMP-P", candidates=one, margin_rate=0.9)
    assert err.value.code == "missing_holdout" and "audience of 1 has no holdout" in str(err.value)
    with factory() as s:
        assert [(m["shopper_id"], m["arm"]) for m in cmp.audience(s, "CMP-P")] == [
            ("S00", "A10"),
            ("S01", "control"),
        ]


def test_views_and_carts_are_counted_in_the_database_with_the_same_features(factory):
    """A shopper with 300 views and 40 carts (some older than 30 days) is read as its purchases and
    redemptions plus one counted row per type, and gets the features the raw rows give: scoring does
    not grow with the views a client sends."""
    from sqlalchemy import select

    from commerce.events import BehaviorEvent
    from commerce.shoppers import Shopper
    from marketing.audience import current_features, shopper_events

    kinds = [("view", 300), ("cart", 40), ("purchase", 3), ("coupon_redeem", 1)]
    with transaction(factory) as s:
        create_shopper(s, "V", "Shanghai")
        record_events(
            s,
            [
                {"event_id": f"{kind}{k}", "ts": START - (1 + k % 45) * DAY, "shopper_id": "V",
                 "product_id": "P1", "event_type": kind, "value": 50.0 if kind == "purchase" else 0.0}
                for kind, n in kinds
                for k in range(n)
            ],
        )  # fmt: skip
    with factory() as s:
        read = shopper_events(s, ["V"], START)
        assert len(read) == 3 + 1 + 2 and read["n"].sum() == 3 + 1 + 210 + 30  # ages 1-30 of 1-45 days
        raw = pd.DataFrame(
            s.execute(
                select(
                    BehaviorEvent.ts, BehaviorEvent.shopper_id, BehaviorEvent.event_type, BehaviorEvent.value
                ).where(BehaviorEvent.shopper_id == "V")
            ).all(),
            columns=["ts", "shopper_id", "event_type", "value"],
        )
        shopper = pd.DataFrame(
            s.execute(select(Shopper.shopper_id, Shopper.region, Shopper.segment, Shopper.created_at)
                      .where(Shopper.shopper_id == "V")).all(),
            columns=["shopper_id", "region", "segment", "created_at"],
        )  # fmt: skip
        columns = list(encode_features(shopper_history_features(raw, shopper, START, "site")).columns)
        scored = current_features(s, ["V"], START, "site", columns)
    expected = encode_features(shopper_history_features(raw, shopper, START, "site"), columns)
    pd.testing.assert_frame_equal(scored, expected)
    assert scored.loc["V", "views_30d"] == 210 and scored.loc["V", "carts_30d"] == 30


def test_served_uplift_holds_no_shopper_data_and_scores_current_features(factory, tmp_path):
    """The artifact's size does not grow with the number of shoppers, and the API scores a shopper
    with the features of the events table now: a purchase recorded after training changes the score."""
    import os

    from marketing.audience import current_features
    from training.uplift import serving_bundle

    model = _effect_model()
    sizes = []
    for n in (40, 4000):
        d = tmp_path / f"m{n}"
        (d / "events").mkdir(parents=True)
        ids = [f"S{i}" for i in range(n)]
        born = START - 100 * DAY
        pd.DataFrame({"shopper_id": ids, "region": "Shanghai", "segment": None, "created_at": born}
                     ).to_parquet(d / "shoppers.parquet")  # fmt: skip
        pd.DataFrame({"ts": [START - DAY] * n, "shopper_id": ids, "event_type": "purchase", "value": 100.0}
                     ).to_parquet(d / "events" / "part-0.parquet")  # fmt: skip
        pd.DataFrame({"coupon_id": ["A10"], "kind": ["amount_off"]}).to_parquet(d / "coupons.parquet")
        bundle = serving_bundle(d, model)
        assert not any(isinstance(v, pd.DataFrame) for v in vars(bundle).values())
        bundle.save(d / "uplift.joblib")
        sizes.append(os.path.getsize(d / "uplift.joblib"))
    assert sizes[0] == sizes[1]

    cols = list(model.feature_names_in_)
    frame = pd.DataFrame({"shopper_id": ["S01"], "coupon_id": ["A10"], "kind": ["amount_off"]})
    with factory() as s:  # S01 has only views so far: no purchase, scored like a lapsed shopper
        before = current_features(s, ["S01"], START, "site", cols)
    with transaction(factory) as s:
        record_events(s, [{"event_id": "late", "ts": START - DAY, "shopper_id": "S01", "product_id": "P1",
                           "event_type": "purchase", "value": 150.0}])  # fmt: skip
    with factory() as s:
        after = current_features(s, ["S01"], START, "site", cols)
        assert current_features(s, ["ghost"], START, "site", cols).empty
    assert before.loc["S01", "recency_days"] > 1000 and after.loc["S01", "recency_days"] == 1.0
    served = ServedCouponUplift(model, before.iloc[0].to_numpy(), {"A10": "amount_off"})
    old = served.predict(frame.join(before.reset_index(drop=True)))[0]
    new = served.predict(frame.join(after.reset_index(drop=True)))[0]
    assert new > old + 0.2  # the model lifts recent buyers (0.05 -> 0.45): the new purchase counts

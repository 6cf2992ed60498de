"""Keyword campaigns, impression tokens and charged clicks on SQLite and PostgreSQL: forged and replayed
tokens are never charged, spend never exceeds the daily budget under 50 concurrent clicks, reports."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, text

from commerce.ads import AdBudgetDay, AdClick, AdImpression
from commerce.db import read_only, transaction
from commerce.errors import ValidationError
from commerce.identity import Keyring
from commerce.services import ads, orders, revenue, shoppers
from commerce.services.checkout import CartLine, checkout
from commerce.sqltypes import utcnow
from serving.search import AdsSnapshot, ClickRateCounts
from tests.commerce.conftest import IDENTITY_KEY, make_id_number
from tests.commerce.test_concurrency import WORKERS, run_concurrently

SECRET = "test-ads-secret"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _campaign(factory, budget="10.00", bid="1.00"):
    with transaction(factory) as s:
        c = ads.create_campaign(
            s,
            "M1",
            name="cream week",
            daily_budget=budget,
            product_ids=["P1", "P4"],
            keywords=[
                ads.KeywordInput("面霜", "broad", bid),
                ads.KeywordInput("Karimi cream", "phrase", bid),
            ],
        )
        return c.campaign_id, [
            k.keyword_id for k in ads.campaign_contents(s, [c.campaign_id])[c.campaign_id][1]
        ]


def _claim(campaign_id, keyword_id, price="0.70", shopper="s0", product="P1", now=NOW, client=None):
    return ads.new_claim(
        campaign_id=campaign_id,
        keyword_id=keyword_id,
        product_id=product,
        slot=1,
        price=Decimal(price),
        shopper_id=shopper,
        client=client,
        now=now,
    )


def test_campaign_rules(shop):
    with transaction(shop) as s:
        with pytest.raises(ValidationError) as err:  # another merchant's product
            ads.create_campaign(s, "M1", name="x", daily_budget="5", product_ids=["P3"])
        assert err.value.code == "products_not_promotable"
        with pytest.raises(ValidationError):
            ads.create_campaign(s, "M1", name="x", daily_budget="0", product_ids=["P1"])
        c = ads.create_campaign(s, "M1", name="x", daily_budget="5", product_ids=["P1"])
        with pytest.raises(ValidationError):
            ads.add_keyword(s, c.campaign_id, ads.KeywordInput("cream", "fuzzy", "1"))
        with pytest.raises(ValidationError):
            ads.add_keyword(s, c.campaign_id, ads.KeywordInput("cream", "exact", "-1"))
        kw = ads.add_keyword(s, c.campaign_id, ads.KeywordInput("Face  CREAM", "exact", "1.5"))
        assert kw.keyword == "face cream"
        ads.update_campaign(s, c.campaign_id, status="ended")
        with pytest.raises(ValidationError):
            ads.update_campaign(s, c.campaign_id, status="active")


def test_keyword_matching():
    q = ("日本", "karimi", "面霜", "大瓶")
    assert ads.keyword_matches(("karimi", "面霜"), "phrase", q)
    assert not ads.keyword_matches(("面霜", "karimi"), "phrase", q)
    assert ads.keyword_matches(("面霜", "karimi"), "broad", q)
    assert not ads.keyword_matches(("面霜", "sorin"), "broad", q)
    assert ads.keyword_matches(("karimi", "面霜"), "exact", ("karimi", "面霜"))
    assert not ads.keyword_matches(("karimi",), "exact", q)


def test_tokens_read_across_releases_in_a_rolling_deploy():
    """A shopper's token carries no `client` (a replica of the release before it knew none), and a
    token from a later release with a field this one does not know still verifies."""
    claim = _claim("kc", 1)
    body = json.loads(ads._unb64(ads.sign_token(SECRET, claim).split(".")[0]))
    assert "client" not in body
    newer = ads._b64(json.dumps({**body, "device": "tv"}).encode())
    mac = ads._b64(hmac.new(SECRET.encode(), newer.encode(), hashlib.sha256).digest())
    assert ads.verify_token(SECRET, f"{newer}.{mac}", NOW) == claim


def test_forged_altered_and_expired_tokens_are_refused():
    claim = _claim("kc", 1)
    token = ads.sign_token(SECRET, claim)
    assert ads.verify_token(SECRET, token, NOW) == claim
    body, mac = token.split(".")
    forged = ads.sign_token("someone-else", claim)
    altered = ads.sign_token(SECRET, _claim("kc", 1, price="0.01")).split(".")[0] + "." + mac
    for bad in (forged, altered, body, "", "a.b.c", token + "x"):
        with pytest.raises(ValidationError) as err:
            ads.verify_token(SECRET, bad, NOW)
        assert err.value.code == "invalid_token"
    with pytest.raises(ValidationError) as err:
        ads.verify_token(SECRET, token, NOW + ads.TOKEN_TTL + timedelta(seconds=1))
    assert err.value.code == "expired_token"


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_random_tokens_never_verify(text):
    with pytest.raises(ValidationError):
        ads.verify_token(SECRET, text, NOW)


def test_replayed_token_is_charged_once(shop):
    cid, (kid, _) = _campaign(shop)
    claim = _claim(cid, kid)
    with transaction(shop) as s:
        first = ads.charge_click(s, claim, NOW)
    with transaction(shop) as s:
        again = ads.charge_click(s, claim, NOW)
    assert (first.charged, first.price, first.replay) == (True, Decimal("0.70"), False)
    assert (again.charged, again.price, again.replay) == (False, Decimal("0"), True)
    with shop() as s:
        assert s.scalar(select(AdBudgetDay.spent)) == Decimal("0.70")
        assert s.scalar(select(func.count()).select_from(AdClick)) == 1


def test_an_anonymous_client_is_billed_once_per_ad_and_day(shop):
    """Anonymous searches carry the searching client's tag: one client's clicks on an ad, over any number
    of searches (fresh tokens each) and replays, bill once a UTC day; another client bills once too, and
    the next day bills again."""
    cid, (kid, _) = _campaign(shop)
    one, other = ads.client_tag("secret", "198.51.100.7"), ads.client_tag("secret", "203.0.113.9")
    assert one != other and len(one) == 32 and "198.51" not in one
    searches = [_claim(cid, kid, shopper=None, client=one) for _ in range(20)]
    results = []
    for claim in [*searches, searches[0], searches[0], _claim(cid, kid, shopper=None, client=other)]:
        with transaction(shop) as s:
            results.append(ads.charge_click(s, claim, NOW + timedelta(minutes=1)))
    assert [r.charged for r in results] == [True] + [False] * 21 + [True]
    assert [r.replay for r in results[20:22]] == [True, True]
    with transaction(shop) as s:
        tomorrow = ads.charge_click(s, _claim(cid, kid, shopper=None, client=one), NOW + timedelta(days=1))
    assert tomorrow.charged
    with shop() as s:
        assert s.scalar(select(func.sum(AdBudgetDay.spent))) == Decimal("2.10")  # 3 clicks at 0.70
        assert s.scalar(select(func.count()).select_from(AdClick).where(AdClick.client == one)) == 21


def test_a_clock_jumped_past_midnight_does_not_open_the_next_days_budget(shop):
    """A replica's clock stepped forward across midnight (an NTP step, a resumed VM): its clicks were
    billed to the next day's budget while today's was spent, and its searches paced on tomorrow's empty
    spend. On PostgreSQL the day is the database server's, as the Idempotency-Key's expiry; SQLite runs
    on this host's one clock, nothing to compare with."""
    postgres = shop.kw["bind"].dialect.name == "postgresql"
    cid, (kid, _) = _campaign(shop, budget="1.00")  # a 0.70 click leaves no room for another
    now = utcnow()
    jumped = (now + timedelta(days=1)).replace(hour=0, minute=5)  # just past the coming midnight
    one, other = ads.client_tag("secret", "198.51.100.7"), ads.client_tag("secret", "203.0.113.9")
    with transaction(shop) as s:
        assert ads.charge_click(s, _claim(cid, kid, shopper=None, client=one, now=now), now).charged
    with transaction(shop) as s:
        late = ads.charge_click(s, _claim(cid, kid, shopper=None, client=other, now=jumped), jumped)
        snapshot = AdsSnapshot.load(s, jumped)
    with shop() as s:
        days = sorted(s.scalars(select(AdBudgetDay.day)))
    if postgres:
        assert not late.charged and days == [ads.day_key(now)]  # was charged to tomorrow's budget
        assert snapshot.day == ads.day_key(now) and snapshot.ads[0].spent_today == Decimal("0.70")
        assert ads.day_key(jumped - snapshot.ahead) == snapshot.day  # pacing on the server's day
    else:
        assert late.charged and days == [ads.day_key(now), ads.day_key(jumped)]


def test_an_ad_whose_budget_ran_out_keeps_its_click_rate(shop):
    """The click rate counted billed clicks only (round 14: repeats must not lift it), so real first
    clicks refused billing once the day's budget ran out counted nothing while their impressions did:
    the ad's rate fell as it sold out (3 of 7 first clicks counted here). The first click of each
    shopper, or anonymous client, on an ad in a UTC day counts, billed or not; repeats still do not."""
    cid, (kid, _) = _campaign(shop, budget="1.40")  # two clicks at 0.70
    one, other = ads.client_tag("secret", "198.51.100.7"), ads.client_tag("secret", "203.0.113.9")
    late, next_day = NOW.replace(hour=23, minute=30), NOW.replace(hour=0, minute=30) + timedelta(days=1)
    clicks = [
        *(_claim(cid, kid, shopper=shopper) for shopper in ("s0", "s1", "s2")),
        _claim(cid, kid, shopper=None, client=one),
        _claim(cid, kid, shopper=None, client=other),
        _claim(cid, kid, shopper=None),  # an older token naming no viewer: itself
        *(_claim(cid, kid, shopper="s0") for _ in range(10)),  # the round 14 attack: repeats
        *(_claim(cid, kid, shopper=None, client=one) for _ in range(10)),
        _claim(cid, kid, shopper="s0", now=late),
        _claim(cid, kid, shopper="s0", now=next_day),  # a new UTC day
    ]
    when = [NOW] * (len(clicks) - 2) + [late, next_day]
    with transaction(shop) as s:
        ads.record_impressions(s, zip(clicks, when, strict=True))
    charged = []
    for claim, at in zip(clicks, when, strict=True):
        with transaction(shop) as s:
            charged.append(ads.charge_click(s, claim, at).charged)
    assert charged == [True, True] + [False] * 25 + [True]  # s0 and s1 billed, then the budget ran out
    with shop() as s:
        snapshot = AdsSnapshot.load(s, next_day + timedelta(hours=1))
    # s0, s1, s2, two clients, the older token, s0 again: the impressions are counted the same way
    assert snapshot.ctr[cid, "P1"] == (7, 7)


def test_fifty_concurrent_clicks_never_exceed_the_budget(shop):
    # budget 10.00 at 0.70 a click: 14 clicks fit (9.80), the 15th would overspend
    cid, (kid, _) = _campaign(shop, budget="10.00")
    claims = [_claim(cid, kid, shopper=None) for _ in range(WORKERS)]

    def click(i):
        with transaction(shop) as s:
            return ads.charge_click(s, claims[i], NOW)

    ok, refused = run_concurrently(click)
    assert not refused
    charged = [r for r in ok if r.charged]
    assert len(charged) == 14
    with shop() as s:
        day = s.scalar(select(AdBudgetDay))
        assert day.spent == Decimal("9.80") <= day.budget and day.clicks == 14
        billed = s.scalar(select(func.sum(AdClick.price)))
        assert Decimal(billed).quantize(Decimal("0.01")) == Decimal("9.80")
        assert s.scalar(select(func.count()).select_from(AdClick)) == WORKERS


def test_fifty_concurrent_replays_of_one_token_charge_once(shop):
    cid, (kid, _) = _campaign(shop)
    claim = _claim(cid, kid)

    def click(_):
        with transaction(shop) as s:
            return ads.charge_click(s, claim, NOW)

    ok, _ = run_concurrently(click)
    assert sum(r.charged for r in ok) == 1
    assert sum(r.replay for r in ok) == WORKERS - 1
    with shop() as s:
        assert s.scalar(select(AdBudgetDay.spent)) == Decimal("0.70")


def test_paused_campaign_clicks_are_not_charged(shop):
    cid, (kid, _) = _campaign(shop)
    with transaction(shop) as s:
        ads.update_campaign(s, cid, status="paused")
    with transaction(shop) as s:
        assert not ads.charge_click(s, _claim(cid, kid), NOW).charged


def test_report_and_platform_revenue(shop):
    cid, (kid, _) = _campaign(shop)
    with transaction(shop) as s:
        shoppers.register_identity(s, "s0", "Shopper 0", make_id_number(1), keyring=Keyring(IDENTITY_KEY))
        shown = [_claim(cid, kid) for _ in range(4)]
        ads.record_impressions(s, [(c, NOW) for c in shown])
        ads.record_impressions(s, [(shown[0], NOW)])  # idempotent
        ads.charge_click(s, shown[0], NOW)
        order = checkout(s, "s0", [CartLine("P1", 1)], at=NOW + timedelta(hours=1))
        orders.pay_order(s, order.order_id, "pay-1", at=NOW + timedelta(hours=1))
        late = checkout(s, "s0", [CartLine("P1", 1)], at=NOW + timedelta(days=9))  # outside 7 days
        orders.pay_order(s, late.order_id, "pay-2", at=NOW + timedelta(days=9))
    with shop() as s:
        rep = ads.campaign_report(s, cid, NOW - timedelta(days=1), NOW + timedelta(days=1))
        rows = revenue.revenue_report(s, NOW - timedelta(days=1), NOW + timedelta(days=1), period="day")
    assert (rep.impressions, rep.clicks, rep.ctr, rep.spend) == (4, 1, 0.25, Decimal("0.70"))
    assert rep.attributed_orders == 1
    assert rep.attributed_revenue == order.total
    assert rep.roas == pytest.approx(float(order.total) / 0.70)
    got = {(r.period, r.source): r.amount for r in rows}
    assert got["2026-06-01", "search_ads"] == Decimal("0.70")


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    budget=st.decimals(min_value=Decimal("0.30"), max_value=Decimal("5.00"), places=2),
    prices=st.lists(st.decimals(min_value=Decimal("0.30"), max_value=Decimal("2.00"), places=2), max_size=12),
    replays=st.lists(st.integers(min_value=0, max_value=11), max_size=4),
)
def test_spend_never_exceeds_budget_and_equals_charged_clicks(shop, budget, prices, replays):
    cid, (kid, _) = _campaign(shop, budget=str(budget))
    claims = [_claim(cid, kid, price=str(p), shopper=None) for p in prices]
    sequence = claims + [claims[i] for i in replays if i < len(claims)]
    results = []
    for claim in sequence:
        with transaction(shop) as s:
            results.append(ads.charge_click(s, claim, NOW))
    charged = sum((r.price for r in results if r.charged), Decimal("0"))
    assert sum(r.charged for r in results[len(claims) :]) == 0  # replays never charged
    with shop() as s:
        spent = s.scalar(select(AdBudgetDay.spent).where(AdBudgetDay.campaign_id == cid)) or Decimal("0")
    assert spent == charged <= budget
    # greedy in arrival order: a click is refused only when it would not fit
    running = Decimal("0")
    for claim, r in zip(claims, results, strict=False):
        fits = running + Decimal(claim.price) <= budget
        assert r.charged == fits
        running += Decimal(claim.price) if fits else 0
    with transaction(shop) as s:  # the examples share the shop: the next one promotes P1 anew
        ads.update_campaign(s, cid, status="ended")


def test_impressions_count_once_per_viewer_and_utc_day(shop):
    """The click rate's impressions are counted once per viewer and UTC day (`ads.viewer_days`), whatever
    the database session's time zone: 23:30 and 00:30 UTC are two days (one day in Shanghai), and an
    anonymous client and a shopper are two viewers whatever their ids."""
    cid, (kid, _) = _campaign(shop)
    midnight = datetime(2026, 6, 2, tzinfo=UTC)
    shown = [
        (_claim(cid, kid, shopper="s0"), midnight - timedelta(minutes=30)),
        (_claim(cid, kid, shopper="s0"), midnight + timedelta(minutes=30)),
        (_claim(cid, kid, shopper="s0"), midnight + timedelta(hours=2)),
        (_claim(cid, kid, shopper=None, client="tag-1"), midnight + timedelta(hours=1)),
        (_claim(cid, kid, shopper=None, client="tag-1"), midnight + timedelta(hours=3)),
        (_claim(cid, kid, shopper=None, client=None), midnight + timedelta(hours=1)),  # names nobody
        (_claim(cid, kid, shopper=None, client=None), midnight + timedelta(hours=1)),
    ]
    with transaction(shop) as s:
        ads.record_impressions(s, shown)
    with shop() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SET TIME ZONE 'Asia/Shanghai'"))
        counted = ads.viewer_days(s, AdImpression, AdImpression.shown_at, midnight - timedelta(days=1))
        snapshot = AdsSnapshot.load(s, midnight + timedelta(hours=4))
    assert counted == {(cid, "P1"): 2 + 1 + 2}
    assert snapshot.ctr[cid, "P1"] == (0, 5)


def _shown_and_clicked(factory, rows, click_every=3):
    """Record `rows` ((claim, at)) as impressions, and every `click_every`-th as clicked at that time."""
    with transaction(factory) as s:
        ads.record_impressions(s, rows)
        s.add_all(
            AdClick(
                token_id=c.token_id,
                campaign_id=c.campaign_id,
                keyword_id=c.keyword_id,
                product_id=c.product_id,
                shopper_id=c.shopper_id,
                client=c.client,
                slot=c.slot,
                price=Decimal("0"),
                charged=False,
                clicked_at=at,
            )
            for c, at in rows[::click_every]
        )


def _full_ctr(session, now):
    since = now - timedelta(days=30)
    imps = ads.viewer_days(session, AdImpression, AdImpression.shown_at, since)
    clicks = ads.viewer_days(session, AdClick, AdClick.clicked_at, since)
    return {ad: (clicks.get(ad, 0), n) for ad, n in imps.items()}


def test_click_rates_kept_between_refreshes_equal_a_full_count(shop):
    """A replica keeps settled days' counts between ads refreshes (`ClickRateCounts`) and counts only
    yesterday, today and the window's partial first day again: after each of 10 refreshes over 5 days
    (four at midnight, where the window starts on a whole day) the rates equal a count of all 30 days, with
    rows at a midnight's last and first microseconds, viewers anonymous or named by nobody, rows written
    after midnight with a time before it (within `ads.SETTLED_AFTER`) and rows a replica whose clock runs
    ahead timed in the future."""
    rng = random.Random(20)
    cid, (kid, _) = _campaign(shop)
    viewers = [("s0", None), ("s1", None), ("s2", None), (None, "tag-1"), (None, "tag-2"), (None, None)]
    tick = timedelta(microseconds=1)

    def rows(lo: datetime, hi: datetime, n: int):
        out = []
        for _ in range(n):
            at = lo + (hi - lo) * rng.random()
            if rng.random() < 0.3:  # around a midnight in [lo, hi)
                at = at.replace(hour=0, minute=0, second=0, microsecond=0) + rng.choice(
                    [-tick, 0 * tick, tick]
                )
                at = min(max(at, lo), hi - tick)
            shopper, client = rng.choice(viewers)
            product = rng.choice(["P1", "P4"])
            out.append((_claim(cid, kid, shopper=shopper, client=client, product=product), at))
        return out

    now = datetime(2026, 6, 14, 13, 17, 5, 123456, tzinfo=UTC)
    _shown_and_clicked(shop, rows(now - timedelta(days=40), now, 600))
    counts = ClickRateCounts()
    steps = [timedelta(hours=5), timedelta(hours=11), None, timedelta(days=1), timedelta(hours=7)] * 2
    for step in steps[:-1]:
        with shop() as s:
            assert AdsSnapshot.load(s, now, counts).ctr == _full_ctr(s, now)
        previous = now
        now = (
            now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            if step is None
            else now + step
        )
        late = timedelta(hours=23)  # written late: timed up to 23 hours before (`ads.SETTLED_AFTER`)
        _shown_and_clicked(shop, rows(previous - late, now + timedelta(minutes=2), 40))
    with shop() as s:
        assert AdsSnapshot.load(s, now, counts).ctr == _full_ctr(s, now)
    # The last refresh at midnight: its window's 30 whole days less yesterday were read from the kept counts
    assert len(counts.impressions._days) == 29


def test_a_refresh_reads_only_the_days_that_may_still_change(shop):
    """After the first refresh, a replica's ads refresh reads no row of a settled day: rows taken out of
    one (here deleted; nothing deletes them in use) are still counted, rows of yesterday are read again."""
    cid, (kid, _) = _campaign(shop)
    now = datetime(2026, 6, 14, 13, 0, tzinfo=UTC)
    old, recent = now - timedelta(days=10), now - timedelta(hours=20)
    _shown_and_clicked(
        shop, [(_claim(cid, kid, shopper=f"s{i}"), at) for i, at in enumerate([old, recent] * 2)]
    )
    counts = ClickRateCounts()
    with shop() as s:
        assert AdsSnapshot.load(s, now, counts).ctr[cid, "P1"] == (2, 4)
    with transaction(shop) as s:
        s.execute(delete(AdImpression))
        s.execute(delete(AdClick))
    with shop() as s:  # the old day's viewers, kept
        assert AdsSnapshot.load(s, now + timedelta(minutes=1), counts).ctr[cid, "P1"] == (1, 2)
        assert AdsSnapshot.load(s, now, ClickRateCounts()).ctr == {}


def test_a_refresh_takes_its_work_mem_in_its_own_transaction_only(shop):
    """An ads refresh groups the recent rows by ad and viewer, spilling to disk under PostgreSQL's default
    `work_mem`: it takes `ads.REFRESH_WORK_MEM` for its own read transaction (SET LOCAL), and the pooled
    connection's next transaction has the server's default again. The counts are the same; SQLite sets
    nothing."""
    cid, (kid, _) = _campaign(shop)
    now = datetime(2026, 6, 14, 13, 0, tzinfo=UTC)
    viewers = [("s0", None), ("s1", None), (None, "tag-1"), (None, None)]
    _shown_and_clicked(
        shop,
        [
            (_claim(cid, kid, shopper=shopper, client=client), now - timedelta(hours=5 * i))
            for i in range(40)
            for shopper, client in [viewers[i % 4]]
        ],
    )
    pg = shop.kw["bind"].dialect.name == "postgresql"
    show = "SELECT current_setting('work_mem'), pg_backend_pid()" if pg else "SELECT NULL, NULL"
    for session in (functools.partial(read_only, shop), functools.partial(transaction, shop)):
        # ended by a rollback (the refresh's) and a commit (which would keep a plain SET)
        with session() as s:
            default, backend = s.execute(text(show)).one()
            loaded = AdsSnapshot.load(s, now, ClickRateCounts()).ctr
            during = s.scalar(text(show))
        with read_only(shop) as s:
            assert s.execute(text(show)).one() == (default, backend)  # the same connection, its default again
            assert loaded == _full_ctr(s, now) != {}
        assert during == (ads.REFRESH_WORK_MEM if pg else None)
        assert default != ads.REFRESH_WORK_MEM

"""Keyword promotion use cases: campaigns, keywords and bids, keyword matching, signed impression tokens,
charged clicks and reports.

A click is charged through the impression token the search response carried: an HMAC-signed claim
(campaign, keyword, product, slot, price, shopper or, for an anonymous search, a tag of the searching
client's address, expiry) with a random id. Forged or altered tokens fail the signature; the id is the
primary key of `ad_clicks`, inserted with ON CONFLICT DO NOTHING, so a replayed token is never charged
twice, and a shopper's (or an anonymous client's) repeat clicks on one ad within a UTC day are recorded
uncharged; the day's spend rises by one conditional UPDATE
(`round(spent + price, 2) <= budget`), so concurrent clicks never take a campaign over its budget.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import case, func, select, text, update
from sqlalchemy.orm import Session

from commerce.ads import (
    AD_CAMPAIGN_STATUSES,
    KEYWORD_STATUSES,
    MATCH_TYPES,
    AdBudgetDay,
    AdClick,
    AdImpression,
    AdKeyword,
    KeywordCampaign,
    KeywordCampaignProduct,
)
from commerce.bulk import insert_ignore, insert_ignore_stmt
from commerce.catalog import Product
from commerce.errors import Conflict, ValidationError
from commerce.merchants import Merchant
from commerce.orders import COUNTED_STATUSES, Order, OrderLine
from commerce.search.analysis import tokens
from commerce.services._util import (
    chosen_id,
    get_or_404,
    locked_or_404,
    new_id,
    required_text,
    server_bounded,
    stored_key,
    stored_keys,
)
from commerce.services.catalog import sellable_products_query
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import as_utc, shifted, to_money, utc_day, utcnow

TOKEN_TTL = timedelta(hours=1)
ATTRIBUTION_WINDOW = timedelta(days=7)
MAX_KEYWORD_TOKENS = 8
# Campaigns not ended (active or paused: a paused one may resume) that may promote one product. Each
# enters a search's auction with every product it promotes, so unbounded, one merchant's 100 campaigns
# over its 500 products made every matching search 50,000 entries (~1 s of CPU). The database holds it
# too (`commerce.ads.KeywordCampaignProduct`'s unique index, migration 0045): raising it means a
# migration.
MAX_OPEN_CAMPAIGNS_PER_PRODUCT = 1


@dataclass(frozen=True)
class KeywordInput:
    keyword: str
    match_type: str
    bid: Decimal | str


def normalize_keyword(keyword: str) -> str:
    """A keyword in analysed form (the tokens a query is cut into), so matching compares like with like."""
    words = tokens(required_text(keyword, "keyword", 200))
    if not words or len(words) > MAX_KEYWORD_TOKENS:
        raise ValidationError(
            f"a keyword needs 1 to {MAX_KEYWORD_TOKENS} words, got {keyword!r}", code="invalid_keyword"
        )
    return " ".join(words)


def _bid(value: Decimal | str) -> Decimal:
    bid = to_money(value, field="bid")
    if bid <= 0:
        raise ValidationError("bid must be positive", code="invalid_bid")
    return bid


def _budget(value: Decimal | str) -> Decimal:
    budget = to_money(value, field="daily_budget")
    if budget <= 0:
        raise ValidationError("daily_budget must be positive", code="invalid_budget")
    return budget


def promotable_products(
    session: Session, merchant_id: str, product_ids: Sequence[str] | None = None, limit: int | None = None
) -> list[Product]:
    """The merchant's products a campaign may promote: approved for sale (listed, merchant approved) and
    in stock. The one rule for creating a campaign and for the console's product picker."""
    stmt = sellable_products_query(product_ids=product_ids, in_stock=True).where(
        Product.merchant_id == merchant_id
    )
    return list(session.scalars(stmt.limit(limit)))


def billing_clock(session: Session, now: datetime | None = None) -> datetime:
    """The time clicks are billed at, and so the day whose budget they are charged to (`day_key`, UTC):
    `now` (default this process's clock) bounded by the database server's clock (`server_bounded`).
    The one clock for billing and for every display of a day's spend: the console's "spent today" read
    this process's clock, so a replica whose clock ran past midnight showed the next day's zero while
    every click was still billed to the day before."""
    return server_bounded(session, as_utc(now or utcnow()))


def spent_on(session: Session, campaign_id: str, at: datetime | None = None) -> Decimal:
    """What the campaign has been charged on the billing day of `at` (default `billing_clock`: today as
    billing counts it), for pacing displays."""
    return spent_by(session, [campaign_id], at)[campaign_id]


def spent_by(session: Session, campaign_ids: list[str], at: datetime | None = None) -> dict[str, Decimal]:
    """`spent_on` of each campaign in one query (a list page: read campaign by campaign, the console's
    list of a merchant's 61 campaigns took 68 statements)."""
    day = day_key(at or billing_clock(session))
    spent = dict(
        session.execute(
            select(AdBudgetDay.campaign_id, AdBudgetDay.spent).where(
                AdBudgetDay.campaign_id.in_(campaign_ids), AdBudgetDay.day == day
            )
        ).all()
    )
    return {c: spent.get(c, Decimal("0.00")) for c in campaign_ids}


def create_campaign(
    session: Session,
    merchant_id: str,
    *,
    name: str,
    daily_budget: Decimal | str,
    product_ids: Sequence[str],
    keywords: Sequence[KeywordInput] = (),
    campaign_id: str | None = None,
) -> KeywordCampaign:
    """A keyword campaign of an approved merchant, promoting its own products that are approved for sale
    (listed, in stock, merchant approved) and in none of its campaigns not ended
    (`MAX_OPEN_CAMPAIGNS_PER_PRODUCT`)."""
    merchant_id = stored_key(session, Merchant, merchant_id)
    merchant = get_or_404(session, Merchant, merchant_id, "merchant")
    if merchant.status != "approved":
        raise ValidationError(f"merchant {merchant_id!r} is not approved", code="merchant_not_approved")
    wanted = sorted(set(stored_keys(session, Product, product_ids).values()))  # `ｐ1` names `p1`
    if not wanted:
        raise ValidationError("a campaign promotes at least one product", code="missing_products")
    promotable = {p.product_id for p in promotable_products(session, merchant_id, wanted)}
    refused = [p for p in wanted if p not in promotable]
    if refused:
        raise ValidationError(
            f"not this merchant's sellable products: {refused}", code="products_not_promotable"
        )
    mine = KeywordCampaign.merchant_id == merchant_id  # another's campaigns are its business
    campaign_id = chosen_id(
        session, campaign_id or new_id("kc"), KeywordCampaign.campaign_id, "campaign_id", mine
    )
    if session.get(KeywordCampaign, campaign_id) is not None:
        raise Conflict(f"campaign {campaign_id!r} already exists", code="duplicate_campaign")
    # Counted after `chosen_id`, which serializes campaigns' creation (an advisory lock on PostgreSQL,
    # SQLite's writers one at a time): two created at once would each count the other's products free.
    taken = _promoted_elsewhere(session, merchant_id, wanted)
    if taken:
        raise Conflict(
            f"already promoted by {MAX_OPEN_CAMPAIGNS_PER_PRODUCT} campaign(s) not ended: {taken};"
            " add keywords to that campaign, or end it first",
            code="product_already_promoted",
        )
    campaign = KeywordCampaign(
        campaign_id=campaign_id,
        merchant_id=merchant_id,
        name=required_text(name, "name", 200),
        daily_budget=_budget(daily_budget),
        status="active",
    )
    session.add(campaign)
    session.flush()
    session.add_all(KeywordCampaignProduct(campaign_id=campaign_id, product_id=p) for p in wanted)
    for kw in keywords:
        add_keyword(session, campaign_id, kw)
    session.flush()
    return campaign


def _promoted_elsewhere(session: Session, merchant_id: str, product_ids: Sequence[str]) -> list[str]:
    """Those of the merchant's `product_ids` already in `MAX_OPEN_CAMPAIGNS_PER_PRODUCT` of its campaigns
    that are not ended (only its own campaigns promote its products)."""
    stmt = (
        select(KeywordCampaignProduct.product_id)
        .join(KeywordCampaign, KeywordCampaign.campaign_id == KeywordCampaignProduct.campaign_id)
        .where(
            KeywordCampaign.merchant_id == merchant_id,
            KeywordCampaign.status != "ended",
            KeywordCampaignProduct.product_id.in_(product_ids),
        )
        .group_by(KeywordCampaignProduct.product_id)
        .having(func.count() >= MAX_OPEN_CAMPAIGNS_PER_PRODUCT)
        .order_by(KeywordCampaignProduct.product_id)
    )
    return list(session.scalars(stmt))


def add_keyword(session: Session, campaign_id: str, data: KeywordInput) -> AdKeyword:
    get_or_404(session, KeywordCampaign, campaign_id, "keyword campaign")
    if data.match_type not in MATCH_TYPES:
        raise ValidationError(f"match_type must be one of {MATCH_TYPES}", code="invalid_match_type")
    keyword = normalize_keyword(data.keyword)
    clash = session.scalar(
        select(AdKeyword).where(
            AdKeyword.campaign_id == campaign_id,
            AdKeyword.keyword == keyword,
            AdKeyword.match_type == data.match_type,
        )
    )
    if clash is not None:
        raise Conflict(
            f"keyword {keyword!r} ({data.match_type}) already in the campaign", code="duplicate_keyword"
        )
    row = AdKeyword(campaign_id=campaign_id, keyword=keyword, match_type=data.match_type, bid=_bid(data.bid))
    session.add(row)
    session.flush()
    return row


def update_campaign(
    session: Session,
    campaign_id: str,
    *,
    daily_budget: Decimal | str | None = None,
    status: str | None = None,
) -> KeywordCampaign:
    """Change the daily budget (from the next day that has no spend yet) or pause / resume / end. The
    row is locked first: a change racing the end read `active`, then wrote over the end."""
    campaign = locked_or_404(session, KeywordCampaign, campaign_id, "keyword campaign", key_share=True)
    if status is not None:
        if status not in AD_CAMPAIGN_STATUSES:
            raise ValidationError(f"status must be one of {AD_CAMPAIGN_STATUSES}", code="invalid_status")
        if campaign.status == "ended" and status != "ended":
            raise ValidationError("an ended campaign cannot restart", code="campaign_ended")
        if status == "ended":  # its products are free for another campaign
            session.execute(
                update(KeywordCampaignProduct)
                .where(KeywordCampaignProduct.campaign_id == campaign.campaign_id)
                .values(campaign_open=False)
            )
        campaign.status = status
    if daily_budget is not None:
        campaign.daily_budget = _budget(daily_budget)
    session.flush()
    return campaign


def update_keyword(
    session: Session, keyword_id: int, *, bid: Decimal | str | None = None, status: str | None = None
) -> AdKeyword:
    row = get_or_404(session, AdKeyword, keyword_id, "keyword")
    if bid is not None:
        row.bid = _bid(bid)
    if status is not None:
        if status not in KEYWORD_STATUSES:
            raise ValidationError(f"status must be one of {KEYWORD_STATUSES}", code="invalid_status")
        row.status = status
    session.flush()
    return row


def list_campaigns(
    session: Session, merchant_id: str, *, limit: int = 50, offset: int = 0
) -> Page[KeywordCampaign]:
    stmt = (
        select(KeywordCampaign)
        .where(KeywordCampaign.merchant_id == merchant_id)
        .order_by(KeywordCampaign.created_at, KeywordCampaign.campaign_id)
    )
    return paginate(session, stmt, limit=limit, offset=offset)


def campaign_contents(
    session: Session, campaign_ids: list[str]
) -> dict[str, tuple[list[str], list[AdKeyword]]]:
    """Each campaign's product ids and keywords (in id order), two queries for any number of campaigns:
    read campaign by campaign, a merchant's list of 60 campaigns took 123 statements."""
    out: dict[str, tuple[list[str], list[AdKeyword]]] = {c: ([], []) for c in campaign_ids}
    products = select(KeywordCampaignProduct.campaign_id, KeywordCampaignProduct.product_id).where(
        KeywordCampaignProduct.campaign_id.in_(campaign_ids)
    )
    for campaign_id, product_id in session.execute(products.order_by(KeywordCampaignProduct.product_id)):
        out[campaign_id][0].append(product_id)
    keywords = select(AdKeyword).where(AdKeyword.campaign_id.in_(campaign_ids)).order_by(AdKeyword.keyword_id)
    for keyword in session.scalars(keywords):
        out[keyword.campaign_id][1].append(keyword)
    return out


def keyword_matches(keyword: Sequence[str], match_type: str, query: Sequence[str]) -> bool:
    """exact: the query is the keyword; phrase: the keyword appears in the query as consecutive words;
    broad: every keyword word appears somewhere in the query."""
    keyword, query = tuple(keyword), tuple(query)
    if match_type == "exact":
        return keyword == query
    if match_type == "phrase":
        n = len(keyword)
        return any(query[i : i + n] == keyword for i in range(len(query) - n + 1))
    if match_type == "broad":
        return set(keyword) <= set(query)
    raise ValueError(f"unknown match type {match_type!r}")


def day_key(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class LiveAd:
    """One active keyword of an active campaign, with what the auction and pacing need."""

    campaign_id: str
    merchant_id: str
    keyword_id: int
    keyword: tuple[str, ...]
    match_type: str
    bid: Decimal
    product_ids: tuple[str, ...]
    daily_budget: Decimal
    spent_today: Decimal


def live_ads(session: Session, now: datetime | None = None) -> list[LiveAd]:
    """Active keywords of active campaigns of approved merchants, with the spend of the billing day of
    `now` (default `billing_clock`)."""
    today = day_key(now or billing_clock(session))
    products: dict[str, list[str]] = {}
    for cid, pid in session.execute(
        select(KeywordCampaignProduct.campaign_id, KeywordCampaignProduct.product_id)
    ):
        products.setdefault(cid, []).append(pid)
    spent = dict(
        session.execute(
            select(AdBudgetDay.campaign_id, AdBudgetDay.spent).where(AdBudgetDay.day == today)
        ).all()
    )
    rows = session.execute(
        select(AdKeyword, KeywordCampaign)
        .join(KeywordCampaign, KeywordCampaign.campaign_id == AdKeyword.campaign_id)
        .join(Merchant, Merchant.merchant_id == KeywordCampaign.merchant_id)
        .where(
            AdKeyword.status == "active", KeywordCampaign.status == "active", Merchant.status == "approved"
        )
        .order_by(AdKeyword.keyword_id)
    )
    return [
        LiveAd(
            campaign_id=c.campaign_id,
            merchant_id=c.merchant_id,
            keyword_id=k.keyword_id,
            keyword=tuple(k.keyword.split()),
            match_type=k.match_type,
            bid=k.bid,
            product_ids=tuple(sorted(products.get(c.campaign_id, ()))),
            daily_budget=c.daily_budget,
            spent_today=spent.get(c.campaign_id, Decimal("0")),
        )
        for k, c in rows
    ]


# --- impression tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpressionClaim:
    token_id: str
    campaign_id: str
    keyword_id: int
    product_id: str
    slot: int
    price: str  # decimal CNY per click
    shopper_id: str | None
    expires_at: int  # unix seconds
    # An anonymous search's client (`client_tag`); None with a shopper, and in tokens issued before it.
    client: str | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_claim(
    *,
    campaign_id: str,
    keyword_id: int,
    product_id: str,
    slot: int,
    price: Decimal,
    shopper_id: str | None,
    client: str | None = None,
    now: datetime | None = None,
) -> ImpressionClaim:
    expires = as_utc(now or utcnow()) + TOKEN_TTL
    return ImpressionClaim(
        token_id=secrets.token_hex(16),
        campaign_id=campaign_id,
        keyword_id=keyword_id,
        product_id=product_id,
        slot=slot,
        price=str(price),
        shopper_id=shopper_id,
        expires_at=int(expires.timestamp()),
        client=client,
    )


def client_tag(secret: str, address: str) -> str:
    """Who searched, for an anonymous search's ad tokens: a keyed hash of the client address (the token
    is readable and `ad_clicks` keeps it; the bare address would be a log of visitors' IPs)."""
    return hmac.new(secret.encode(), f"client:{address}".encode(), hashlib.sha256).hexdigest()[:32]


_CLAIM_FIELDS = frozenset(f.name for f in fields(ImpressionClaim))


def sign_token(secret: str, claim: ImpressionClaim) -> str:
    # A field at its default is left out, and `verify_token` ignores fields it does not know: during a
    # rolling deploy, replicas of the previous and the next release read each other's tokens.
    data = {k: v for k, v in asdict(claim).items() if not (k == "client" and v is None)}
    body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify_token(secret: str, token: str, now: datetime | None = None) -> ImpressionClaim:
    """The claim inside a token this platform signed and that has not expired; ValidationError otherwise."""
    try:
        body, mac = token.split(".")
        good = hmac.compare_digest(
            _unb64(mac), hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
        )
    except (ValueError, TypeError):
        good = False
    if not good:
        raise ValidationError("invalid impression token", code="invalid_token")
    claim = ImpressionClaim(**{k: v for k, v in json.loads(_unb64(body)).items() if k in _CLAIM_FIELDS})
    if as_utc(now or utcnow()).timestamp() > claim.expires_at:
        raise ValidationError("impression token expired", code="expired_token")
    return claim


def record_impressions(session: Session, claims: Iterable[tuple[ImpressionClaim, datetime]]) -> None:
    """Store shown sponsored results (idempotent: a token id is stored once)."""
    insert_ignore(
        session,
        AdImpression.__table__,
        (
            {
                "token_id": c.token_id,
                "campaign_id": c.campaign_id,
                "keyword_id": c.keyword_id,
                "product_id": c.product_id,
                "shopper_id": c.shopper_id,
                "client": c.client,
                "slot": c.slot,
                "price": Decimal(c.price),
                "shown_at": as_utc(at),
            }
            for c, at in claims
        ),
        ["token_id"],
    )


def viewer_days(
    session: Session,
    model: type[AdImpression] | type[AdClick],
    at,
    since: datetime,
    until: datetime | None = None,
) -> dict[tuple[str, str], int]:
    """Per ad (campaign, product): its rows of `model` (`ad_impressions` or `ad_clicks`, timed by `at`)
    since `since` (and before `until`), each viewer's in a UTC day counted once: the viewer is the
    shopper, else the anonymous search's client (`_charged_today`'s), and a row naming neither (stored
    before the client was, or from a token without one) counts itself. The click rate's one rule for
    both: counting every search that showed an ad let one viewer searching a rival's keyword in a loop
    sink its rate and take its slot; counting every click let one account lift its own ad by clicking in
    a loop, and counting billed clicks only left out first clicks refused once the day's budget ran out
    (docs/api.md, round 14)."""
    once = _viewer_day_rows(model, at, since, until, by_day=False)
    rows = session.execute(
        select(once.c.campaign_id, once.c.product_id, func.count()).group_by(
            once.c.campaign_id, once.c.product_id
        )
    )
    return {(c, p): n for c, p, n in rows}


def viewer_days_by_day(
    session: Session, model: type[AdImpression] | type[AdClick], at, since: datetime
) -> dict[date, dict[tuple[str, str], int]]:
    """`viewer_days` per UTC day (each day's counts add up to theirs)."""
    once = _viewer_day_rows(model, at, since, None, by_day=True)
    rows = session.execute(
        select(once.c.day, once.c.campaign_id, once.c.product_id, func.count()).group_by(
            once.c.day, once.c.campaign_id, once.c.product_id
        )
    )
    days: dict[date, dict[tuple[str, str], int]] = {}
    for day, c, p, n in rows:
        days.setdefault(date.fromisoformat(day) if isinstance(day, str) else day, {})[c, p] = n
    return days


def _viewer_day_rows(model, at, since: datetime, until: datetime | None, *, by_day: bool):
    # One row per ad, viewer and day, then counted per ad, grouped on the columns themselves: read in ad
    # and viewer order from `ix_ad_impressions_viewer_days`, only each ad and shopper's few rows are
    # sorted; count(DISTINCT 'viewer@day') built a key per row and sorted them all (docs/search.md).
    anonymous = model.shopper_id.is_(None)
    within = [at >= since] if until is None else [at >= since, at < until]
    day = utc_day(at)
    return (
        select(model.campaign_id, model.product_id, *([day.label("day")] if by_day else []))
        .where(*within)
        .group_by(
            model.campaign_id,
            model.product_id,
            model.shopper_id,
            case((anonymous, model.client)),
            day,
            case((anonymous & model.client.is_(None), model.token_id)),
        )
        .subquery()
    )


DAY = timedelta(days=1)

#: How long after its UTC day ended a row may still be written with a time in that day. A click is timed
#: by `billing_clock` in the transaction that writes it, so it is late by at most that transaction's length
#: plus how far the writing replica's clock runs behind the server's (`server_bounded` only stops it
#: running ahead); a token issued before midnight and clicked after it is a click of the new day. An
#: impression is timed by the replica's clock when it was shown and written by its `ImpressionLog` within
#: a second, but held in the log's backlog while the database is away and written, with its time, when it
#: is back: late by as long as the outage. A day's counts are kept once a day has passed since it ended.
SETTLED_AFTER = DAY


#: PostgreSQL's `work_mem` for the ads refresh's transaction (`use_refresh_work_mem`). A later refresh
#: groups the recent days' rows by ad, viewer and day, an order no index holds for a range of time
#: (`ix_ad_impressions_recent_days` is time first): in a hash table, or a sort spilled to disk once it
#: outgrows `work_mem` (the default 4 MB). At 1M impressions the table takes 2.6 MB and fits; at 5M
#: (250,000 recent rows) it took 18 MB, the sort spilled and a refresh took 2.6 s, 1.0 s with 32 MB
#: (docs/search.md). Bound: each hash or sort node of a count may take it (a
#: hash `hash_mem_multiplier` times it, 2 by default) and a count has two, so at most about 128 MB of
#: server memory per refresh, one refresh at a time per API worker (and per campaign change's refresh
#: running next to it).
REFRESH_WORK_MEM = "32MB"


def use_refresh_work_mem(session: Session) -> None:
    """`REFRESH_WORK_MEM` for the rest of `session`'s transaction on PostgreSQL (SET LOCAL: the server's
    default again once it ends, for every other use of the pooled connection); nothing on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{REFRESH_WORK_MEM}'"))


class RollingViewerDays:
    """`viewer_days` of `model` since a time that moves forward, for a process that counts it again and
    again (each API replica's ads refresh, over 30 days): per-viewer-day counts add up over days and a day
    that ended `SETTLED_AFTER` ago no longer changes, so its per-ad counts are kept and each count reads
    only the rows of the days not yet settled (yesterday and today) and of the window's first, partial
    day (`since` moves with the clock). Counting the whole window on every refresh of every replica took
    3.2 s (PostgreSQL) and 5.4 s (SQLite) at 5M impressions (bench/ads_refresh.py)."""

    def __init__(self, model: type[AdImpression] | type[AdClick], at):
        self.model, self.at = model, at
        self._days: dict[date, dict[tuple[str, str], int]] = {}  # settled days' per-ad counts
        self._lock = threading.Lock()  # a campaign change's refresh may run next to the periodic one

    def count(self, session: Session, since: datetime, clock: datetime) -> dict[tuple[str, str], int]:
        """`viewer_days(session, model, at, since)`, with `clock` the time rows are written at now
        (`billing_clock`): the days that ended `SETTLED_AFTER` before it are settled."""
        since = as_utc(since)
        start = _midnight(since)
        first = start if start == since else start + DAY  # the window's first whole day
        recent = _midnight(as_utc(clock) - SETTLED_AFTER)  # days from here on may still change
        settled = [(first + i * DAY).date() for i in range((recent - first).days)]
        total: Counter[tuple[str, str]] = Counter()
        with self._lock:
            self._days = {d: self._days[d] for d in settled if d in self._days}
            missing = [d for d in settled if d not in self._days]
            # One read per day from the first day not kept on: those that may still change, the day just
            # settled after a midnight, every day at a replica's first count (then from `since`, the
            # window's partial first day with them).
            lo = _at_midnight(missing[0]) if missing else recent
            if lo <= first:
                lo = since
            found = viewer_days_by_day(session, self.model, self.at, lo)
            self._days.update((d, found.get(d, {})) for d in missing)
            for counts in found.values():
                total.update(counts)
            for day, counts in self._days.items():
                if _at_midnight(day) < lo:
                    total.update(counts)
        if since < first < lo:  # the partial first day, when not read with the rest
            total.update(viewer_days(session, self.model, self.at, since, first))
        return dict(total)


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _at_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class ClickResult:
    token_id: str
    campaign_id: str
    product_id: str
    charged: bool
    price: Decimal  # billed amount (0 when not charged)
    replay: bool  # the token had already been used: nothing recorded, nothing charged


def charge_click(session: Session, claim: ImpressionClaim, now: datetime | None = None) -> ClickResult:
    """Record a click on a verified claim and bill it if the campaign is active and today's budget covers
    the price. Safe under concurrency on SQLite and PostgreSQL (see the module docstring). The click is
    dated, and its day's budget chosen, by `billing_clock` (`now` bounded by the database server's clock):
    a replica whose clock jumped past midnight opened the next day's budget early."""
    now = billing_clock(session, now)
    price = to_money(claim.price, field="price")
    inserted = session.execute(
        insert_ignore_stmt(session, AdClick.__table__, ["token_id"])
        .values(
            token_id=claim.token_id,
            campaign_id=claim.campaign_id,
            keyword_id=claim.keyword_id,
            product_id=claim.product_id,
            shopper_id=claim.shopper_id,
            client=claim.client,
            slot=claim.slot,
            price=Decimal("0"),
            charged=False,
            clicked_at=now,
        )
        .returning(AdClick.token_id)
    ).scalar_one_or_none()
    if inserted is None:
        return ClickResult(claim.token_id, claim.campaign_id, claim.product_id, False, Decimal("0"), True)
    campaign = get_or_404(session, KeywordCampaign, claim.campaign_id, "keyword campaign")
    charged = False
    if campaign.status == "active":
        day = day_key(now)
        session.execute(
            insert_ignore_stmt(session, AdBudgetDay.__table__, ["campaign_id", "day"]).values(
                campaign_id=campaign.campaign_id, day=day, budget=campaign.daily_budget, spent=0, clicks=0
            )
        )
        # The day's row locked before the repeat check (on PostgreSQL the insert above already waits for an
        # open transaction that charged it): a racing click of the same viewer's is seen committed.
        locked_or_404(session, AdBudgetDay, (campaign.campaign_id, day), "budget day")
        repeat = _charged_today(session, claim, now)
        charged = not repeat and (
            session.execute(
                update(AdBudgetDay.__table__)
                .where(
                    AdBudgetDay.campaign_id == campaign.campaign_id,
                    AdBudgetDay.day == day,
                    func.round(AdBudgetDay.spent + price, 2) <= AdBudgetDay.budget,
                )
                .values(spent=func.round(AdBudgetDay.spent + price, 2), clicks=AdBudgetDay.clicks + 1)
            ).rowcount
            == 1
        )
    if charged:
        session.execute(
            update(AdClick.__table__)
            .where(AdClick.token_id == claim.token_id)
            .values(charged=True, price=price)
        )
    return ClickResult(
        claim.token_id,
        claim.campaign_id,
        claim.product_id,
        charged,
        price if charged else Decimal("0"),
        False,
    )


def _charged_today(session: Session, claim: ImpressionClaim, now: datetime) -> bool:
    """This shopper, or for an anonymous search this client, was already billed for this ad (campaign
    and product) today: a repeat click is recorded, not charged (each search gives a fresh token, so one
    shopper key, or one anonymous client, searching and clicking in a loop billed every click, emptying
    a competitor's daily budget in minutes). A claim naming neither (a token issued before anonymous
    searches were tagged, valid an hour at most) has nobody to count repeats against."""
    if claim.shopper_id is not None:
        viewer = AdClick.shopper_id == claim.shopper_id
    elif claim.client is not None:
        viewer = AdClick.client == claim.client
    else:
        return False
    start = as_utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        session.scalar(
            select(AdClick.token_id)
            .where(
                AdClick.campaign_id == claim.campaign_id,
                AdClick.product_id == claim.product_id,
                viewer,
                AdClick.charged.is_(True),
                AdClick.clicked_at >= start,
            )
            .limit(1)
        )
        is not None
    )


# --- reports ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    impressions: int
    clicks: int
    ctr: float | None
    spend: Decimal
    attributed_orders: int
    attributed_revenue: Decimal
    roas: float | None  # attributed revenue / spend


def campaign_report(session: Session, campaign_id: str, start: datetime, end: datetime) -> CampaignReport:
    """Impressions and clicks over [start, end); an order is attributed when the clicking shopper paid for
    the clicked product within 7 days after the click (each order line counted once)."""
    get_or_404(session, KeywordCampaign, campaign_id, "keyword campaign")
    start, end = as_utc(start), as_utc(end)
    impressions = session.scalar(
        select(func.count()).where(
            AdImpression.campaign_id == campaign_id,
            AdImpression.shown_at >= start,
            AdImpression.shown_at < end,
        )
    )
    clicks = session.execute(
        select(AdClick.shopper_id, AdClick.product_id, AdClick.clicked_at, AdClick.price).where(
            AdClick.campaign_id == campaign_id, AdClick.clicked_at >= start, AdClick.clicked_at < end
        )
    ).all()
    spend = sum((c.price for c in clicks), Decimal("0.00"))
    orders: set[int] = set()
    revenue = Decimal("0.00")
    counted: set[int] = set()
    by_shopper: dict[str, list] = {}
    for c in clicks:
        if c.shopper_id is not None:
            by_shopper.setdefault(c.shopper_id, []).append(c)
    if by_shopper:
        lines = session.execute(
            select(
                OrderLine.id,
                Order.order_id,
                Order.shopper_id,
                Order.paid_at,
                OrderLine.product_id,
                OrderLine.total,
            )
            .join(OrderLine, OrderLine.order_id == Order.order_id)
            .where(
                Order.shopper_id.in_(list(by_shopper)),
                Order.status.in_(COUNTED_STATUSES),
                Order.paid_at >= start,
                Order.paid_at < shifted(end, ATTRIBUTION_WINDOW),
            )
        ).all()
        for line_id, order_id, shopper, paid_at, product, total in lines:
            paid = as_utc(paid_at)
            if line_id not in counted and any(
                c.product_id == product
                and as_utc(c.clicked_at) <= paid <= as_utc(c.clicked_at) + ATTRIBUTION_WINDOW
                for c in by_shopper[shopper]
            ):
                counted.add(line_id)
                orders.add(order_id)
                revenue += total
    n_clicks = len(clicks)
    return CampaignReport(
        campaign_id=campaign_id,
        impressions=int(impressions or 0),
        clicks=n_clicks,
        ctr=(n_clicks / impressions) if impressions else None,
        spend=spend,
        attributed_orders=len(orders),
        attributed_revenue=revenue,
        roas=float(revenue / spend) if spend > 0 else None,
    )


def ad_revenue_by_day(session: Session, start: datetime, end: datetime) -> list[tuple[datetime, Decimal]]:
    """Charged clicks over [start, end): the platform's keyword-promotion revenue."""
    return list(
        session.execute(
            select(AdClick.clicked_at, AdClick.price).where(
                AdClick.charged.is_(True),
                AdClick.clicked_at >= as_utc(start),
                AdClick.clicked_at < as_utc(end),
            )
        ).all()
    )

"""Coupon definition, grants, discount computation and atomic redemption.

Redemption never reads-then-writes a counter. Each limit is one conditional UPDATE whose row count says
whether it held (`used < usage_limit AND round(spent + d, 2) <= budget`; per shopper
`used < per_shopper_limit`; the coupon's campaign, `round(spent + d, 2) <= budget` over all its
coupons), so concurrent checkouts on SQLite and PostgreSQL can never exceed a limit or a budget.
The budget rule is written once (`_coupon_budget_covers`, `_campaign_budget_covers`): redemption
applies it to the order's discount, `eligible_coupons` to the most the coupon can take off an order,
so a coupon the storefront offers is never refused at checkout for want of budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import (
    ColumnElement,
    Subquery,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from commerce.bulk import insert_ignore, insert_ignore_stmt
from commerce.campaigns import CONTROL, LIVE_STATUSES, Campaign, CampaignMember
from commerce.catalog import Category, Product
from commerce.coupons import (
    COUPON_ID_PATTERN,
    COUPON_KINDS,
    SCOPE_TYPES,
    Coupon,
    CouponGrant,
    CouponRedemption,
    CouponShopperUsage,
)
from commerce.errors import Conflict, InvalidState, LimitExceeded, NotFound, ValidationError
from commerce.merchants import Merchant
from commerce.services._util import (
    chosen_name,
    get_or_404,
    locked_or_404,
    new_id,
    stored_key,
    unlike_stored,
    visible_text,
)
from commerce.services.events import record_events
from commerce.services.pagination import Page, paginate
from commerce.shoppers import Shopper
from commerce.sqltypes import as_utc, round_fen, shifted, to_money, to_rate, utcnow

SCOPE_MODELS = {"category": Category, "merchant": Merchant, "product": Product}
#: PostgreSQL advisory lock serializing what gives shoppers live campaign coupons (`lock_live_coupons`).
LIVE_COUPON_LOCK_KEY = 7_236_002


@dataclass(frozen=True)
class CouponInput:
    kind: str
    value: Decimal | str
    name: str = ""
    issuer: str = "platform"
    merchant_id: str | None = None
    cap: Decimal | str | None = None
    min_spend: Decimal | str = "0"
    scope_type: str = "platform"
    scope_id: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    usage_limit: int | None = None
    per_shopper_limit: int = 1
    budget: Decimal | str | None = None
    campaign_id: str | None = None
    season_id: str | None = None
    requires_grant: bool = False
    coupon_id: str | None = None


#: Terms every coupon has: an edit may change them, never clear them.
REQUIRED_TERMS = (
    "kind",
    "value",
    "name",
    "issuer",
    "min_spend",
    "scope_type",
    "per_shopper_limit",
    "requires_grant",
)


def _terms(session: Session, data: CouponInput) -> dict:
    """The validated column values of `data` (create and edit share this one rule set)."""
    if nulls := [f for f in REQUIRED_TERMS if getattr(data, f) is None]:  # an edit sending `null`
        raise ValidationError(f"{', '.join(nulls)} cannot be null", code="invalid_coupon")
    name = visible_text(data.name or "", "name")  # shoppers see it in the storefront's coupon list
    if data.kind not in COUPON_KINDS:
        raise ValidationError(f"kind must be one of {COUPON_KINDS}", code="invalid_coupon")
    # read as every number is (ASCII digits, no float): `Decimal("abc")` raised a bare ConversionSyntax
    if data.kind == "amount_off":
        value = to_money(data.value, field="value")
    else:
        value = to_rate(data.value, field="value", code="invalid_coupon")
    if value <= 0 or (data.kind == "percent_off" and value > 1):
        raise ValidationError(
            "value must be > 0 (CNY for amount_off, a fraction in (0, 1] for percent_off)",
            code="invalid_coupon",
        )
    cap = None if data.cap is None else to_money(data.cap, field="cap")
    budget = None if data.budget is None else to_money(data.budget, field="budget")
    min_spend = to_money(data.min_spend, field="min_spend")
    if (cap is not None and cap <= 0) or (budget is not None and budget <= 0) or min_spend < 0:
        raise ValidationError(
            "cap and budget must be positive, min_spend non-negative", code="invalid_coupon"
        )
    if data.usage_limit is not None and data.usage_limit < 1:
        raise ValidationError("usage_limit must be >= 1 (or None for unlimited)", code="invalid_coupon")
    if data.per_shopper_limit < 1:
        raise ValidationError("per_shopper_limit must be >= 1", code="invalid_coupon")
    if data.starts_at and data.ends_at and as_utc(data.ends_at) <= as_utc(data.starts_at):
        raise ValidationError("ends_at must be after starts_at", code="invalid_window")
    if data.scope_type not in SCOPE_TYPES:
        raise ValidationError(f"scope_type must be one of {SCOPE_TYPES}", code="invalid_coupon")
    if (data.scope_type == "platform") != (data.scope_id is None):
        raise ValidationError("scope_id is required except for platform scope", code="invalid_coupon")
    # The ids it names are stored as every lookup reads them (`stored_key`): `ｍ1` names merchant `m1`.
    if data.scope_id is not None:
        data = replace(data, scope_id=stored_key(session, SCOPE_MODELS[data.scope_type], data.scope_id))
        get_or_404(session, SCOPE_MODELS[data.scope_type], data.scope_id, data.scope_type)
    if data.campaign_id is not None:
        data = replace(data, campaign_id=stored_key(session, Campaign, data.campaign_id))
        get_or_404(session, Campaign, data.campaign_id, "campaign")
        if not data.requires_grant:  # else anyone could use it: the holdout, other campaigns' shoppers
            raise ValidationError(
                f"a coupon of campaign {data.campaign_id!r} is one of its arms: it must require a grant "
                "(requires_grant), so only the shoppers the campaign gives it to can use it",
                code="invalid_arm",
            )
    if data.issuer == "store":
        if data.merchant_id is not None:
            data = replace(data, merchant_id=stored_key(session, Merchant, data.merchant_id))
        merchant = get_or_404(session, Merchant, data.merchant_id, "merchant")
        owns = (data.scope_type == "merchant" and data.scope_id == merchant.merchant_id) or (
            data.scope_type == "product"
            and session.get(Product, data.scope_id).merchant_id == merchant.merchant_id
        )
        if not owns:
            raise ValidationError("a store coupon must target its own shop or products", code="invalid_scope")
    elif data.issuer != "platform" or data.merchant_id is not None:
        raise ValidationError("issuer is 'platform' (no merchant_id) or 'store'", code="invalid_coupon")
    return dict(
        name=name,
        issuer=data.issuer,
        merchant_id=data.merchant_id,
        campaign_id=data.campaign_id,
        season_id=data.season_id,
        kind=data.kind,
        value=value,
        cap=cap,
        min_spend=min_spend,
        scope_type=data.scope_type,
        scope_id=data.scope_id,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        usage_limit=data.usage_limit,
        per_shopper_limit=data.per_shopper_limit,
        budget=budget,
        requires_grant=data.requires_grant,
    )


def check_coupon_id(coupon_id: str) -> str:
    """The one coupon id rule, for every way a coupon is created: the id as stored, in its one form
    (`chosen_name`: no two coupons look alike), matching `COUPON_ID_PATTERN`, and not `control`: a
    campaign's audience names the holdout arm so, and a coupon `control` in it treated no one (every
    member given it was stored as holdout)."""
    coupon_id = chosen_name(coupon_id, "coupon_id")
    if not re.fullmatch(COUPON_ID_PATTERN, coupon_id):
        raise ValidationError(
            f"coupon_id {coupon_id!r}: 1-64 characters starting with a letter, digit or _; no control,"
            " invisible or direction-changing character and no `/`",
            code="invalid_coupon",
        )
    if coupon_id == CONTROL:
        raise ValidationError(
            f"coupon_id {CONTROL!r} names a campaign's holdout arm: choose another id", code="invalid_coupon"
        )
    return coupon_id


def create_coupon(session: Session, data: CouponInput) -> Coupon:
    """Validate and store a coupon. Store coupons must be scoped to their merchant or its products."""
    values = _terms(session, data)
    coupon_id = check_coupon_id(data.coupon_id or new_id("c"))
    if session.get(Coupon, coupon_id) is not None:
        raise Conflict(f"coupon {coupon_id!r} already exists", code="duplicate_coupon")
    # `ѕаѵе` (Cyrillic) beside `save`; named: only marketers and admins create coupons, and they see all
    unlike_stored(session, coupon_id, Coupon.coupon_id, "coupon_id", true())
    coupon = Coupon(coupon_id=coupon_id, **values)
    session.add(coupon)
    session.flush()
    return coupon


EDITABLE = tuple(f for f in CouponInput.__dataclass_fields__ if f != "coupon_id")


def update_coupon(session: Session, coupon_id: str, **changes) -> Coupon:
    """Change the terms of a coupon nobody holds or has used yet, nor an audience past planning (a
    scheduled campaign's) is to get; the result is validated like a new one.

    The coupon's row is locked first, then one conditional UPDATE (`used = 0`, no grant, redemption
    or scheduled audience) writes, in a statement that sees what committed while it waited: an edit
    racing a first redemption or a launch's grants (which lock the row too) either lands before it
    or changes nothing and raises, so no shopper ever holds terms that changed under them, and a
    campaign never grants a coupon moved off its budget.
    """
    if unknown := sorted(set(changes) - set(EDITABLE)):
        raise ValidationError(
            f"cannot edit {unknown}; editable: {', '.join(EDITABLE)}", code="invalid_coupon"
        )
    coupon_id = stored_key(session, Coupon, coupon_id)
    coupon = locked_or_404(session, Coupon, coupon_id, "coupon")
    unused = and_(
        Coupon.coupon_id == coupon_id,
        Coupon.used == 0,
        ~exists().where(CouponGrant.coupon_id == coupon_id),
        ~exists().where(CouponRedemption.coupon_id == coupon_id),
        ~exists().where(
            CampaignMember.coupon_id == coupon_id,
            CampaignMember.campaign_id == Campaign.campaign_id,
            Campaign.status != "draft",
        ),
    )
    in_use = InvalidState(
        f"coupon {coupon_id!r} has been granted or used, or a scheduled campaign's audience is to "
        "get it; retire it and create a new one",
        code="coupon_in_use",
    )
    # Before the terms are checked: a completed campaign's coupon not started by then holds the empty
    # window [at, at), and its edit is refused for being in use, not for a window nobody asked to change.
    if not session.scalar(select(exists().where(unused))):
        raise in_use
    current = {f: getattr(coupon, f) for f in EDITABLE}
    values = _terms(session, CouponInput(**{**current, **changes}))
    took = session.execute(
        update(Coupon.__table__).where(unused).values(**values).execution_options(synchronize_session=False)
    ).rowcount
    if took != 1:
        raise in_use
    session.refresh(coupon)
    return coupon


def end_coupon(session: Session, coupon_id: str, at: datetime | None = None) -> Coupon:
    """Retire a coupon from `at` (default now); uses already redeemed stay valid. Never extends a window."""
    coupon = get_coupon(session, coupon_id)
    at = as_utc(at or utcnow())
    if coupon.starts_at is not None and at <= coupon.starts_at:
        raise ValidationError("a coupon cannot end before it starts", code="invalid_window")
    if coupon.ends_at is None or at < coupon.ends_at:
        coupon.ends_at = at
        session.flush()
    return coupon


def get_coupon(session: Session, coupon_id: str) -> Coupon:
    """The coupon a client names by its id, as stored or in any look-alike form (`stored_key`)."""
    return get_or_404(session, Coupon, stored_key(session, Coupon, coupon_id), "coupon")


def list_coupons(
    session: Session, *, campaign_id: str | None = None, limit: int = 50, offset: int = 0
) -> Page[Coupon]:
    stmt = select(Coupon).order_by(Coupon.coupon_id)
    if campaign_id is not None:
        stmt = stmt.where(Coupon.campaign_id == campaign_id)
    return paginate(session, stmt, limit=limit, offset=offset)


def lock_live_coupons(session: Session) -> None:
    """Serialize what gives shoppers campaign coupons (scheduling an audience, granting a campaign's
    coupon by hand; not a coupon of no campaign) until the transaction ends, so two at once cannot
    both pass the one-live-coupon check or the frequency cap: on PostgreSQL an advisory lock (take it
    before any row lock), SQLite's BEGIN IMMEDIATE already serializes writers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LIVE_COUPON_LOCK_KEY})


def live_holders(campaign: Campaign) -> Subquery:
    """(shopper_id) of everyone who holds, or is about to hold, a live coupon of another campaign whose
    window overlaps `campaign`'s (one row per coupon): the treated audience of each scheduled or
    running one, and whoever was granted one of its coupons by hand. A holdout member holds none."""
    overlapping = select(Campaign.campaign_id).where(
        Campaign.campaign_id != campaign.campaign_id,
        Campaign.status.in_(LIVE_STATUSES),
        Campaign.starts_at < campaign.ends_at,
        Campaign.ends_at > campaign.starts_at,
    )
    treated = select(CampaignMember.shopper_id).where(
        CampaignMember.campaign_id.in_(overlapping), CampaignMember.arm != CONTROL
    )
    granted = select(CouponGrant.shopper_id).where(
        CouponGrant.coupon_id.in_(select(Coupon.coupon_id).where(Coupon.campaign_id.in_(overlapping)))
    )
    return union_all(treated, granted).subquery()


#: A campaign in these states has contacted (or will contact at its start) its treated audience.
CONTACTING_STATUSES = ("scheduled", "running", "completed")


@dataclass(frozen=True)
class ContactPolicy:
    """At most `frequency_cap` campaign coupons per shopper within any `window_days`: responses fall
    with recent grants (coupon fatigue), and the planner's effect model prices each grant as if it
    were the first. Scheduling (`commerce.services.campaigns.frequency_capped`) and hand grants
    (`grant_coupon`) apply it."""

    frequency_cap: int = 3
    window_days: int = 28

    def __post_init__(self):
        if self.frequency_cap < 1 or self.window_days < 1:
            raise ValueError("frequency_cap and window_days must be at least 1")


def nearby_contacts(campaign_id: str, at: datetime, policy: ContactPolicy) -> Subquery:
    """(shopper_id) once per contact less than `window_days` before or after `at` (a campaign's start,
    or a hand grant's time), other campaigns' than `campaign_id` only: the treated audience of every
    scheduled, running or completed campaign, contacted at its start (whenever it was launched), and
    campaign grants given by hand to a shopper outside such an audience, at their grant time. Both
    directions, so the contacts planned or made later count as much as the earlier ones."""
    since = shifted(at, -timedelta(days=policy.window_days))
    until = shifted(at, timedelta(days=policy.window_days))
    in_audience = (
        exists()
        .where(
            CampaignMember.campaign_id == CouponGrant.campaign_id,  # the (campaign, shopper) unique index
            CampaignMember.shopper_id == CouponGrant.shopper_id,
            CampaignMember.arm != CONTROL,
            Campaign.campaign_id == CampaignMember.campaign_id,
            Campaign.status.in_(CONTACTING_STATUSES),
        )
        .correlate(CouponGrant)
    )
    audiences = (
        select(CampaignMember.shopper_id)
        .join(Campaign, Campaign.campaign_id == CampaignMember.campaign_id)
        .where(
            Campaign.status.in_(CONTACTING_STATUSES),
            Campaign.campaign_id != campaign_id,
            Campaign.starts_at > since,
            Campaign.starts_at < until,
            CampaignMember.arm != CONTROL,
        )
    )
    by_hand = select(CouponGrant.shopper_id).where(
        CouponGrant.campaign_id.is_not(None),
        CouponGrant.campaign_id != campaign_id,
        ~in_audience,
        CouponGrant.granted_at > since,
        CouponGrant.granted_at < until,
    )
    return union_all(audiences, by_hand).subquery()


def grant_coupon(
    session: Session,
    coupon_id: str,
    shopper_ids: Iterable[str],
    *,
    channel: str = "site",
    at: datetime | None = None,
    contact_policy: ContactPolicy | None = ContactPolicy(),  # noqa: B008 (frozen, immutable)
) -> int:
    """Give a coupon to shoppers by hand (already-granted ones are skipped) and log coupon_grant events;
    a campaign's coupon's grants carry its campaign. Returns the number of new grants.

    A campaign's coupon is given only while its campaign runs (`campaign_not_running`) and only if it is
    valid within the campaign's window (`invalid_window`; launching bounds the coupons it has), to nobody
    its audience gives something else (the holdout, `holdout_member`; another arm), nor to one given
    another of its coupons by hand or holding a live coupon of another campaign whose window overlaps
    (`live_coupon_held`): at most one live campaign coupon each. A grant is a contact: nobody new to the
    coupon with `contact_policy.frequency_cap` other campaign contacts within its `window_days` of `at`
    gets it (`frequency_capped`, the rule scheduling applies; None: no cap), nor does anyone once it
    cannot be used again (`_room_left`, the storefront's rule: `campaign_budget_exhausted`,
    `coupon_exhausted`). No coupon is given once its window has ended by `at` (`coupon_expired`,
    checkout's rule: a coupon ended early, say, while its campaign runs); redemption's own
    conditional UPDATEs still hold the budget exactly.

    Such grants are serialized with scheduling (`lock_live_coupons`), then the coupon's row is locked
    (as `update_coupon` locks it), so neither a schedule nor an edit lands between the checks and the
    grants. A coupon of no campaign needs no rule, so its grant takes only its row and does not queue
    behind a schedule. Whether the coupon is a campaign's is read under its row lock in a savepoint;
    if it is, the savepoint's rollback gives the row back before the scheduling lock is taken (that
    lock, then the row: holding the row while waiting for the lock could close a cycle with a schedule
    waiting for a campaign's row and an audience being stored, whose foreign keys wait for the row).
    """
    ids = sorted(set(shopper_ids))
    at = as_utc(at or utcnow())
    coupon_id = stored_key(session, Coupon, coupon_id)
    probe = session.begin_nested()
    coupon = locked_or_404(session, Coupon, coupon_id, "coupon")
    if coupon.campaign_id is None:
        probe.commit()
    else:
        probe.rollback()
        lock_live_coupons(session)
        coupon = locked_or_404(session, Coupon, coupon_id, "coupon")
        if coupon.campaign_id is not None:  # an edit may have taken it off its campaign meanwhile
            _check_one_live_coupon(session, coupon, ids)  # first: a completed campaign's are expired
    _check_not_expired(coupon, at)
    if coupon.campaign_id is not None:
        _check_room_left(session, coupon)
        if contact_policy is not None:
            _check_frequency_cap(session, coupon, ids, at, contact_policy)
    return grant_audience(session, coupon_id, ids, campaign_id=coupon.campaign_id, channel=channel, at=at)


def _check_one_live_coupon(session: Session, coupon: Coupon, shopper_ids: list[str]) -> None:
    """Raise unless each shopper may be given this campaign coupon by hand (`grant_coupon`)."""
    campaign = session.get(Campaign, coupon.campaign_id)
    if campaign.status != "running":
        raise InvalidState(
            f"campaign {campaign.campaign_id!r} is {campaign.status}: its coupons are given by hand only "
            "while it runs (its launch bounds them to its window; before, they would be live outside it)",
            code="campaign_not_running",
        )
    window = (coupon.starts_at, coupon.ends_at)
    # launching bounds a campaign's coupons to its window; one created or edited since may not be
    if None in window or window[0] < campaign.starts_at or window[1] > campaign.ends_at:
        raise ValidationError(
            f"coupon {coupon.coupon_id!r} is valid from {window[0]} to {window[1]}, not within its "
            f"campaign's window ({campaign.starts_at} to {campaign.ends_at}), where the one-live-coupon "
            "rule compares it",
            code="invalid_window",
        )
    elsewhere = live_holders(campaign)
    for start in range(0, len(shopper_ids), 5000):
        chunk = shopper_ids[start : start + 5000]
        arms = dict(
            session.execute(
                select(CampaignMember.shopper_id, CampaignMember.arm).where(
                    CampaignMember.campaign_id == campaign.campaign_id,
                    CampaignMember.shopper_id.in_(chunk),
                    CampaignMember.arm != coupon.coupon_id,
                )
            ).all()
        )
        if holdout := sorted(s for s, arm in arms.items() if arm == CONTROL):
            raise Conflict(
                f"shoppers {holdout[:5]} are in the holdout of campaign {campaign.campaign_id!r}, which "
                "gets no coupon (else the campaign could not be measured)",
                code="holdout_member",
            )
        siblings = select(Coupon.coupon_id).where(
            Coupon.campaign_id == campaign.campaign_id, Coupon.coupon_id != coupon.coupon_id
        )
        by_hand = select(CouponGrant.shopper_id).where(  # another of this campaign's coupons
            CouponGrant.coupon_id.in_(siblings), CouponGrant.shopper_id.in_(chunk)
        )
        held = (
            set(arms)
            | set(
                session.scalars(
                    select(elsewhere.c.shopper_id).where(elsewhere.c.shopper_id.in_(chunk)).distinct()
                )
            )
            | set(session.scalars(by_hand))
        )
        if held:
            raise Conflict(
                f"shoppers {sorted(held)[:5]} hold, or are to hold, another live campaign coupon (of "
                f"campaign {campaign.campaign_id!r}'s audience or an overlapping campaign): at most one each",
                code="live_coupon_held",
            )


def _check_room_left(session: Session, coupon: Coupon) -> None:
    """Raise unless the campaign coupon could still be used once (`_room_left`, what the storefront
    offers by): a grant of one that cannot is a contact, and a live coupon for the one-coupon rule,
    that gives the shopper nothing."""
    own, campaign = session.execute(
        select(*_room_left())
        .select_from(Coupon)
        .outerjoin(Campaign, Campaign.campaign_id == Coupon.campaign_id)
        .where(Coupon.coupon_id == coupon.coupon_id)
    ).one()
    if not campaign:
        raise LimitExceeded(
            f"campaign {coupon.campaign_id!r} has no budget left for coupon {coupon.coupon_id!r}'s largest "
            "discount: granted now, it would count as a contact and give nothing",
            code="campaign_budget_exhausted",
        )
    if not own:
        raise LimitExceeded(
            f"coupon {coupon.coupon_id!r} has no use or budget left for its largest discount: granted now, "
            "it would count as a contact and give nothing",
            code="coupon_exhausted",
        )


def _check_frequency_cap(
    session: Session, coupon: Coupon, shopper_ids: list[str], at: datetime, policy: ContactPolicy
) -> None:
    """Raise unless each shopper new to this campaign coupon has fewer than `frequency_cap` other
    contacts within `window_days` of `at` (`nearby_contacts`, scheduling's count)."""
    contacts = nearby_contacts(coupon.campaign_id, at, policy)
    holders = select(CouponGrant.shopper_id).where(CouponGrant.coupon_id == coupon.coupon_id)
    capped: list[str] = []
    for start in range(0, len(shopper_ids), 5000):
        chunk = shopper_ids[start : start + 5000]
        capped += session.scalars(
            select(contacts.c.shopper_id)
            .where(contacts.c.shopper_id.in_(chunk), contacts.c.shopper_id.not_in(holders))
            .group_by(contacts.c.shopper_id)
            .having(func.count() >= policy.frequency_cap)
            .order_by(contacts.c.shopper_id)
        )
    if capped:
        raise Conflict(
            f"shoppers {capped[:5]} already have {policy.frequency_cap} campaign coupons within "
            f"{policy.window_days} days of this grant (the frequency cap): a hand grant is a contact too",
            code="frequency_capped",
        )


def grant_audience(
    session: Session,
    coupon_id: str,
    shopper_ids: Iterable[str],
    *,
    campaign_id: str | None,
    channel: str,
    at: datetime | None = None,
) -> int:
    """Insert the grants and their coupon_grant events, unchecked: `grant_coupon`'s, and a launch's,
    whose audience scheduling checked (`commerce.services.campaigns.start_campaign`, which holds the
    coupon's row). Returns the number of new grants."""
    at = as_utc(at or utcnow())
    ids = sorted(set(shopper_ids))
    known = set(session.scalars(select(Shopper.shopper_id).where(Shopper.shopper_id.in_(ids))))
    if missing := [s for s in ids if s not in known]:
        raise NotFound(f"unknown shoppers {missing[:5]}", code="shopper_not_found")
    rows = [
        {
            "coupon_id": coupon_id,
            "shopper_id": s,
            "campaign_id": campaign_id,
            "channel": channel,
            "granted_at": at,
        }
        for s in ids
    ]
    stmt = insert_ignore_stmt(session, CouponGrant.__table__, ["coupon_id", "shopper_id"]).returning(
        CouponGrant.shopper_id
    )
    granted = list(session.scalars(stmt, rows)) if rows else []
    record_events(
        session,
        [
            {
                "event_id": f"grant:{coupon_id}:{s}",
                "ts": at,
                "shopper_id": s,
                "product_id": None,
                "event_type": "coupon_grant",
                "quantity": 0,
                "value": 0.0,
                "campaign_id": campaign_id,
                "coupon_id": coupon_id,
            }
            for s in granted
        ],
    )
    return len(granted)


@dataclass(frozen=True)
class PricedLine:
    """A cart line as coupons see it: who sells it, where it sits in the tree, what it costs."""

    product_id: str
    merchant_id: str
    category_path: tuple[str, ...]
    amount: Decimal


def in_scope(coupon: Coupon, line: PricedLine) -> bool:
    """Whether the coupon covers this line (platform, category subtree, merchant or product scope)."""
    if coupon.scope_type == "platform":
        return True
    if coupon.scope_type == "category":
        return coupon.scope_id in line.category_path
    if coupon.scope_type == "merchant":
        return line.merchant_id == coupon.scope_id
    return line.product_id == coupon.scope_id


def check_usable(session: Session, coupon: Coupon, shopper_id: str, at: datetime) -> None:
    """Raise unless the coupon is in its window and, if it needs one, the shopper holds a grant."""
    at = as_utc(at)
    if coupon.starts_at is not None and at < coupon.starts_at:
        raise ValidationError(f"coupon {coupon.coupon_id!r} is not valid yet", code="coupon_not_started")
    _check_not_expired(coupon, at)
    if coupon.requires_grant is False and coupon.campaign_id is None:
        return  # open to anyone (`_usable_by`'s first branch, on the loaded row): no query per checkout
    if not session.scalar(select(_usable_by(shopper_id)).where(Coupon.coupon_id == coupon.coupon_id)):
        raise _not_granted(coupon.coupon_id)


def _in_window(at: datetime) -> ColumnElement[bool]:
    """The coupon's window holds `at` (`check_usable`'s rule, in SQL: redemption and the storefront)."""
    return and_(
        or_(Coupon.starts_at.is_(None), Coupon.starts_at <= at),
        or_(Coupon.ends_at.is_(None), Coupon.ends_at > at),
    )


def _check_not_expired(coupon: Coupon, at: datetime) -> None:
    """Raise `coupon_expired` if the coupon's window has ended by `at`: checkout refuses it, and a hand
    grant of it would give nothing (a campaign's would still count as a contact)."""
    if coupon.ends_at is not None and at >= coupon.ends_at:
        raise ValidationError(f"coupon {coupon.coupon_id!r} has expired", code="coupon_expired")


def _usable_by(shopper_id: str) -> ColumnElement[bool]:
    """The coupon is open to anyone, or the shopper was granted it. A campaign's coupon is grant-only
    whatever its `requires_grant` says (one stored open before that was refused reached the holdout
    and other campaigns' shoppers): the one rule checkout, redemption and the storefront's list apply."""
    granted = exists().where(CouponGrant.coupon_id == Coupon.coupon_id, CouponGrant.shopper_id == shopper_id)
    return or_(and_(Coupon.requires_grant.is_(False), Coupon.campaign_id.is_(None)), granted)


def _not_granted(coupon_id: str) -> ValidationError:
    return ValidationError(f"coupon {coupon_id!r} was not granted to this shopper", code="coupon_not_granted")


def discount_for(coupon: Coupon, lines: list[PricedLine]) -> tuple[Decimal, list[int]]:
    """Discount in CNY and the indexes of the lines it applies to; raise if out of scope or under min spend.

    The discount never exceeds the eligible amount, so no line goes below zero.
    """
    eligible = [i for i, line in enumerate(lines) if in_scope(coupon, line)]
    if not eligible:
        raise ValidationError(
            f"coupon {coupon.coupon_id!r} does not apply to these goods", code="coupon_out_of_scope"
        )
    base = sum((lines[i].amount for i in eligible), Decimal(0))
    if base < coupon.min_spend:
        raise ValidationError(
            f"coupon {coupon.coupon_id!r} needs {coupon.min_spend} CNY of eligible goods (have {base})",
            code="coupon_min_spend",
        )
    amount = coupon.value if coupon.kind == "amount_off" else round_fen(base * coupon.value)
    if coupon.cap is not None:
        amount = min(amount, coupon.cap)
    return min(round_fen(amount), base), eligible


def redeem(
    session: Session,
    coupon_id: str,
    shopper_id: str,
    amount: Decimal,
    order_id: int | None = None,
    *,
    at: datetime | None = None,
) -> CouponRedemption:
    """Atomically take one use and `amount` CNY of budget at `at` (default now); raise LimitExceeded if
    any limit would break, `coupon_not_granted` if the shopper may not use it (`_usable_by`, in the same
    UPDATE: the caller's check is not the only one standing between a campaign's coupon and its
    holdout), `coupon_not_started` / `coupon_expired` outside its window (`_in_window`, in the UPDATE
    too: a coupon granted ahead of its start, or ended while a checkout was between its check and this,
    is not redeemed).

    Call inside a transaction and roll back on error: the counters are then untouched.
    """
    if amount < 0:
        raise ValidationError("redemption amount must be >= 0", code="invalid_money")
    at = as_utc(at or utcnow())
    coupon_id = stored_key(session, Coupon, coupon_id)
    coupon_table = Coupon.__table__
    took = session.execute(
        update(coupon_table)
        .where(
            Coupon.coupon_id == coupon_id,
            _in_window(at),
            _usable_by(shopper_id),
            or_(Coupon.usage_limit.is_(None), Coupon.used < Coupon.usage_limit),
            _coupon_budget_covers(amount),
        )
        .values(used=Coupon.used + 1, spent=func.round(Coupon.spent + amount, 2))
    ).rowcount
    if took != 1:
        coupon = get_or_404(session, Coupon, coupon_id, "coupon")
        session.refresh(coupon)
        check_usable(session, coupon, shopper_id, at)  # outside its window, or not granted
        if coupon.usage_limit is not None and coupon.used >= coupon.usage_limit:
            raise LimitExceeded(f"coupon {coupon_id!r} is used up", code="coupon_exhausted")
        raise LimitExceeded(
            f"coupon {coupon_id!r} has no budget left for {amount} CNY", code="coupon_budget_exhausted"
        )
    _take_campaign_budget(session, coupon_id, amount)
    insert_ignore(
        session, CouponShopperUsage.__table__, [{"coupon_id": coupon_id, "shopper_id": shopper_id, "used": 0}]
    )
    usage_limit = select(Coupon.per_shopper_limit).where(Coupon.coupon_id == coupon_id).scalar_subquery()
    mine = session.execute(
        update(CouponShopperUsage.__table__)
        .where(
            CouponShopperUsage.coupon_id == coupon_id,
            CouponShopperUsage.shopper_id == shopper_id,
            CouponShopperUsage.used < usage_limit,
        )
        .values(used=CouponShopperUsage.used + 1)
    ).rowcount
    if mine != 1:
        raise LimitExceeded(
            f"shopper already used coupon {coupon_id!r} the allowed times", code="coupon_shopper_limit"
        )
    redemption = CouponRedemption(
        coupon_id=coupon_id, shopper_id=shopper_id, order_id=order_id, amount=amount
    )
    session.add(redemption)
    session.flush()
    return redemption


def _coupon_budget_covers(amount) -> ColumnElement[bool]:
    """The coupon's own budget (if any) has `amount` CNY left."""
    return or_(Coupon.budget.is_(None), func.round(Coupon.spent + amount, 2) <= Coupon.budget)


def _campaign_budget_covers(amount) -> ColumnElement[bool]:
    """The campaign's budget has `amount` CNY left (a hard cap over all its coupons)."""
    return func.round(Campaign.spent + amount, 2) <= Campaign.budget


def _largest_discount() -> ColumnElement:
    """The most a coupon can take off one order: its value (amount_off) or cap, whichever is lower.
    A percentage without a cap has no bound short of the cart; it counts as 0.01 CNY, the least any
    order can take, so it is offered while its budget lasts and a large cart may still be refused."""
    bounded = case((Coupon.kind == "amount_off", Coupon.value), else_=Coupon.cap)
    return case(
        (and_(Coupon.cap.is_not(None), Coupon.cap < bounded), Coupon.cap),
        else_=func.coalesce(bounded, literal(Decimal("0.01"))),
    )


def _room_left() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(the coupon has a use left and budget for the most it can take off one order; its campaign's
    budget has that too, or it has no campaign), over `coupons` outer-joined to `campaigns`: what the
    storefront offers by, and what a hand grant of a campaign's coupon needs."""
    largest = _largest_discount()
    own = and_(
        or_(Coupon.usage_limit.is_(None), Coupon.used < Coupon.usage_limit), _coupon_budget_covers(largest)
    )
    return own, or_(Campaign.campaign_id.is_(None), _campaign_budget_covers(largest))


def _take_campaign_budget(session: Session, coupon_id: str, amount: Decimal) -> None:
    """The campaign's budget is a hard cap over all its coupons: take `amount` from it in one
    conditional UPDATE, or raise LimitExceeded. A coupon of no campaign has no such cap."""
    campaign_id = select(Coupon.campaign_id).where(Coupon.coupon_id == coupon_id).scalar_subquery()
    took = session.execute(
        update(Campaign.__table__)
        .where(Campaign.campaign_id == campaign_id, _campaign_budget_covers(amount))
        .values(spent=func.round(Campaign.spent + amount, 2))
    ).rowcount
    if took != 1 and session.scalar(select(exists().where(Campaign.campaign_id == campaign_id))):
        raise LimitExceeded(
            f"the campaign of coupon {coupon_id!r} has no budget left for {amount} CNY",
            code="campaign_budget_exhausted",
        )


def _counted_spend() -> ColumnElement:
    """What a campaign's budget has given: its coupons' redemptions not released (cancel, refund).
    `campaigns.spent` must equal it; a correlated subquery on `campaigns`."""
    return (
        select(func.round(func.coalesce(func.sum(CouponRedemption.amount), 0), 2))
        .join(Coupon, Coupon.coupon_id == CouponRedemption.coupon_id)
        .where(Coupon.campaign_id == Campaign.campaign_id, CouponRedemption.released_at.is_(None))
        .scalar_subquery()
    )


@dataclass(frozen=True)
class SpendDrift:
    """A campaign whose stored `spent` is not what its redemptions took."""

    campaign_id: str
    stored: Decimal
    counted: Decimal
    budget: Decimal


def campaign_spend_drift(session: Session, campaign_ids: Iterable[str] | None = None) -> list[SpendDrift]:
    """Campaigns (all, or `campaign_ids`) whose `spent` differs from their redemptions' discounts, in
    one query."""
    counted = _counted_spend()
    stmt = select(Campaign.campaign_id, Campaign.spent, counted, Campaign.budget).order_by(
        Campaign.campaign_id
    )
    if campaign_ids is not None:
        stmt = stmt.where(Campaign.campaign_id.in_(sorted(set(campaign_ids))))
    rows = (SpendDrift(c, *(round_fen(Decimal(str(v))) for v in rest)) for c, *rest in session.execute(stmt))
    return [d for d in rows if d.stored != d.counted]


def recount_campaign_spend(
    session: Session, campaign_ids: Iterable[str] | None = None, *, raise_budget: bool = False
) -> list[SpendDrift]:
    """Set `spent` of the campaigns (all, or `campaign_ids`) to what their redemptions took; returns
    the drift found. A campaign whose redemptions took more than its budget cannot hold that (CHECK
    spent <= budget): with `raise_budget` (history, recorded as it happened) its budget is raised to
    it, else its `spent` is set to its budget, so nothing more is spent (left lower, the budget would
    pay out again), and it stays in the drift returned by `campaign_spend_drift`. Migration
    `0026_campaign_spent_backfill` applies the same rule in its own SQL (tested to agree)."""
    drift = campaign_spend_drift(session, campaign_ids)
    if not drift:
        return []
    counted = _counted_spend()
    over = counted > Campaign.budget
    if raise_budget:
        values = {"spent": counted, "budget": case((over, counted), else_=Campaign.budget)}
    else:
        values = {"spent": case((over, Campaign.budget), else_=counted)}
    stmt = update(Campaign).where(Campaign.campaign_id.in_([d.campaign_id for d in drift]))
    session.execute(stmt.values(**values).execution_options(synchronize_session="fetch"))
    return drift


def release(session: Session, order_id: int, *, at: datetime | None = None) -> None:
    """Give back the use and budget an order took (on cancellation or refund). No-op without a coupon
    or when already released."""
    redemption = session.scalar(
        select(CouponRedemption).where(
            CouponRedemption.order_id == order_id, CouponRedemption.released_at.is_(None)
        )
    )
    if redemption is None:
        return
    session.execute(
        update(Coupon.__table__)
        .where(Coupon.coupon_id == redemption.coupon_id)
        .values(used=Coupon.used - 1, spent=func.round(Coupon.spent - redemption.amount, 2))
    )
    campaign_id = select(Coupon.campaign_id).where(Coupon.coupon_id == redemption.coupon_id).scalar_subquery()
    session.execute(
        update(Campaign.__table__)
        .where(Campaign.campaign_id == campaign_id)
        .values(spent=func.round(Campaign.spent - redemption.amount, 2))
    )
    session.execute(
        update(CouponShopperUsage.__table__)
        .where(
            CouponShopperUsage.coupon_id == redemption.coupon_id,
            CouponShopperUsage.shopper_id == redemption.shopper_id,
        )
        .values(used=CouponShopperUsage.used - 1)
    )
    redemption.released_at = as_utc(at or utcnow())
    session.flush()


def eligible_coupons(session: Session, shopper_id: str, at: datetime | None = None) -> list[Coupon]:
    """Coupons the shopper could use now: in window, uses left, granted if needed, and budget left for
    the most the coupon can take off an order, in its own budget and in its campaign's (the rule
    redemption applies, so checkout does not refuse an offered coupon for want of budget)."""
    get_or_404(session, Shopper, shopper_id, "shopper")
    at = as_utc(at or utcnow())
    own_used = (
        select(CouponShopperUsage.used)
        .where(CouponShopperUsage.coupon_id == Coupon.coupon_id, CouponShopperUsage.shopper_id == shopper_id)
        .scalar_subquery()
    )
    stmt = (
        select(Coupon)
        .outerjoin(Campaign, Campaign.campaign_id == Coupon.campaign_id)
        .where(
            _in_window(at),
            *_room_left(),
            or_(own_used.is_(None), own_used < Coupon.per_shopper_limit),
            _usable_by(shopper_id),
        )
        .order_by(Coupon.coupon_id)
    )
    return list(session.scalars(stmt))

"""Chosen ids and names stored before they were normalised (coupon ids, experiment, variant and layer
names created before round 6, `chosen_name`): every lookup reads a name in its normal form
(`lookup_name`), so such a row could no longer be found by any spelling of it. `unnormalised` lists them;
`renormalise` rewrites each to its normal form with everything that names it, except where that form is
taken (another row holds it, or two stored names share it): those are reported and left as they are.

Salts stay as stored (an experiment's defaults to its name, a layer's holds it): units keep their
variants. Run `crosscart db renormalise --dry-run` first.

Other chosen ids (merchant, product, campaign, keyword campaign, category and shopper ids, `KEPT_IDS`)
stored in another form than `commerce.services._util.id_form` are listed too, and left as they are:
besides the rows of many tables, trained models, feature files, search indexes and API keys outside this
database name them, so each needs renaming by hand (or keeping).

It also recomputes stored skeletons the live ICU data no longer gives (`stale_skeletons`: a PyICU upgrade
changed the confusables), which the look-alike check looks up (`commerce.sqltypes.skeleton_of`), stock
locations' too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import String, delete, insert, literal, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from commerce.ads import KeywordCampaign
from commerce.campaigns import CONTROL, Campaign, CampaignMember
from commerce.catalog import Category, Product
from commerce.coupons import Coupon, CouponGrant, CouponRedemption, CouponShopperUsage
from commerce.events import BehaviorEvent
from commerce.experiments import (
    Experiment,
    ExperimentExposure,
    ExperimentImpression,
    ExperimentLayer,
    ExperimentVariant,
)
from commerce.logistics import Warehouse
from commerce.merchants import BrandAuthorization, Merchant
from commerce.orders import Order
from commerce.services._util import lookup_name
from commerce.shoppers import Shopper
from commerce.sqltypes import SKELETON, renamed, skeleton

#: Columns that name a coupon by its id, besides `coupons.coupon_id` (foreign keys and the event log).
COUPON_REFERENCES = (
    CouponGrant.coupon_id,
    CouponShopperUsage.coupon_id,
    CouponRedemption.coupon_id,
    Order.coupon_id,
    CampaignMember.coupon_id,
    BehaviorEvent.coupon_id,
)

#: Chosen ids listed when not in their stored form, never rewritten (see above): kind -> column.
KEPT_IDS = {
    "merchant": Merchant.merchant_id,
    "product": Product.product_id,
    "campaign": Campaign.campaign_id,
    "keyword campaign": KeywordCampaign.campaign_id,
    "category": Category.category_id,
    "shopper": Shopper.shopper_id,
}
#: Names and ids refused as look-alikes by the skeleton stored beside them (`unlike_stored`).
LOOKED_UP = (
    Coupon.coupon_id,
    Merchant.name,
    BrandAuthorization.brand,
    Experiment.name,
    ExperimentLayer.name,
    *KEPT_IDS.values(),
    Warehouse.warehouse_id,
)


@dataclass(frozen=True)
class Rename:
    """A stored name not in its normal form. `clash`: the other stored names of that form, or that form
    itself stored (in the same experiment, for a variant); with any, or a form empty or longer than the
    column (`limit`: NFKC spells `㍿` in 4 letters), or a coupon id whose form is `control` (the holdout
    arm's name: its audience would become the holdout), or another chosen id (`KEPT_IDS`), it is left
    as it is."""

    kind: str  # coupon, experiment, layer, variant, or one of `KEPT_IDS`
    key: str | int  # the row: a coupon's (merchant's, ...) id, else the row id
    stored: str
    normal: str
    scope: str = ""  # a variant's experiment
    clash: tuple[str, ...] = ()
    limit: int = 64

    @property
    def reserved(self) -> bool:
        return self.kind == "coupon" and self.normal == CONTROL

    @property
    def safe(self) -> bool:
        return (
            0 < len(self.normal) <= self.limit
            and not self.clash
            and not self.reserved
            and self.kind not in KEPT_IDS
        )

    def describe(self) -> str:
        where = f" of experiment {self.scope!r}" if self.scope else ""
        if self.safe:
            return f"{self.kind}{where} {self.stored!r} -> {self.normal!r}"
        if not 0 < len(self.normal) <= self.limit:
            why = f"its normal form {self.normal!r} is empty or longer than {self.limit} characters"
        elif self.reserved:
            why = f"{CONTROL!r} names a campaign's holdout arm"
        elif self.normal in self.clash:
            why = f"{self.normal!r} is stored already"
        elif self.clash:
            why = f"{', '.join(map(repr, self.clash))} has the same normal form {self.normal!r}"
        else:  # a chosen id (`KEPT_IDS`) whose normal form is free: the advice names it only then
            why = f"rename it to {self.normal!r} by hand: models, features and keys name it too"
        return f"{self.kind}{where} {self.stored!r}: left as it is ({why})"


def _plan(kind: str, rows, column) -> list[Rename]:
    """Renames of (key, scope, name) rows of `column` whose name is not in normal form; names clash
    within a scope."""
    rows = list(rows)
    by_form: dict[tuple[str, str], set[str]] = defaultdict(set)
    stored = {(scope, name) for _, scope, name in rows}
    for _, scope, name in rows:
        by_form[scope, lookup_name(name)].add(name)
    out = []
    for key, scope, name in rows:
        normal = lookup_name(name)
        if normal != name:
            taken = by_form[scope, normal] | ({normal} if (scope, normal) in stored else set())
            clash = tuple(sorted(taken - {name}))
            out.append(Rename(kind, key, name, normal, scope, clash, column.type.length))
    return out


def unnormalised(session: Session) -> list[Rename]:
    """Every stored coupon id, experiment, layer and variant name and chosen id (`KEPT_IDS`) not in its
    normal form."""
    variants = (
        select(ExperimentVariant.id, Experiment.name, ExperimentVariant.name)
        .join(Experiment, Experiment.id == ExperimentVariant.experiment_id)
        .order_by(ExperimentVariant.id)
    )
    coupons = session.scalars(select(Coupon.coupon_id).order_by(Coupon.coupon_id)).all()
    ids = {kind: session.scalars(select(c).order_by(c)).all() for kind, c in KEPT_IDS.items()}
    named = {
        kind: session.execute(select(model.id, model.name).order_by(model.id)).all()
        for kind, model in (("experiment", Experiment), ("layer", ExperimentLayer))
    }
    return [
        *_plan("coupon", ((c, "", c) for c in coupons), Coupon.coupon_id),
        *_plan("experiment", ((k, "", n) for k, n in named["experiment"]), Experiment.name),
        *_plan("layer", ((k, "", n) for k, n in named["layer"]), ExperimentLayer.name),
        *_plan("variant", session.execute(variants).all(), ExperimentVariant.name),
        *(r for kind, c in KEPT_IDS.items() for r in _plan(kind, ((i, "", i) for i in ids[kind]), c)),
    ]


def _rename_coupon(session: Session, old: str, new: str) -> None:
    """A coupon's id is its primary key, referenced without ON UPDATE CASCADE: the row is copied under the
    new id, every reference moved to it, then the old row deleted (each step keeps the foreign keys)."""
    table = Coupon.__table__
    values = renamed(Coupon.coupon_id, new)  # its id and the id's skeleton
    rest = [c for c in table.c if c.name not in values]
    session.execute(
        insert(table).from_select(
            [*values, *(c.name for c in rest)],
            select(*(literal(v, String) for v in values.values()), *rest).where(table.c.coupon_id == old),
        )
    )
    for column in COUPON_REFERENCES:
        session.execute(update(column.class_).where(column == old).values({column.key: new}))
    session.execute(update(CampaignMember).where(CampaignMember.arm == old).values(arm=new))
    campaign_id = session.scalar(select(Coupon.campaign_id).where(Coupon.coupon_id == new))
    logged = select(CampaignMember).where(
        CampaignMember.campaign_id == campaign_id, CampaignMember.arm_probabilities.is_not(None)
    )
    for member in session.scalars(logged) if campaign_id is not None else ():
        probabilities = member.arm_probabilities  # {arm: probability}, the holdout's and other arms' too
        if old in probabilities:
            member.arm_probabilities = {(new if a == old else a): p for a, p in probabilities.items()}
    session.flush()
    session.execute(delete(table).where(table.c.coupon_id == old))


def _rename_variant(session: Session, variant_id: int, old: str, new: str) -> None:
    experiment_id = session.scalar(
        select(ExperimentVariant.experiment_id).where(ExperimentVariant.id == variant_id)
    )
    session.execute(update(ExperimentVariant).where(ExperimentVariant.id == variant_id).values(name=new))
    for table in (ExperimentExposure, ExperimentImpression):  # exposures and impressions name it
        session.execute(
            update(table)
            .where(table.experiment_id == experiment_id, table.variant == old)
            .values(variant=new)
        )


def stale_skeletons(session: Session) -> list[tuple[InstrumentedAttribute[str], str, str]]:
    """(column, name, its skeleton now) of each stored name of `LOOKED_UP` whose stored skeleton is
    another: the look-alike check would miss it."""
    out = []
    for column in LOOKED_UP:
        stored = getattr(column.class_, column.key + SKELETON)
        for name, key in session.execute(select(column, stored).distinct().order_by(column, stored)):
            if key != (now := skeleton(name)):
                out.append((column, name, now))
    return out


def renormalise(session: Session) -> list[Rename]:
    """Rewrite each stored name of `unnormalised` that can be (`Rename.safe`) to its normal form, with
    the rows that name it, and each of `stale_skeletons`; returns the renames, the ones left unchanged
    too."""
    found = unnormalised(session)
    for r in (r for r in found if r.safe):
        if r.kind == "coupon":
            _rename_coupon(session, r.stored, r.normal)
        elif r.kind == "variant":
            _rename_variant(session, r.key, r.stored, r.normal)
        else:
            model = Experiment if r.kind == "experiment" else ExperimentLayer
            session.execute(update(model).where(model.id == r.key).values(renamed(model.name, r.normal)))
    for column, name, _ in stale_skeletons(session):
        session.execute(update(column.class_).where(column == name).values(renamed(column, name)))
    session.flush()
    return found

"""Online experiment use cases the API and the CLI call: create (with a free traffic slice of its
layer), list, start, stop, the running configurations, exposures (idempotent per unit), the items shown
on interleaved and exploration pages, and the event log and segments the analysis reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from commerce.bulk import insert_ignore_stmt
from commerce.errors import Conflict, InvalidState, NotFound, ValidationError
from commerce.experiments import (
    INFERENCES,
    MAX_VARIANT_WEIGHT,
    STATUSES,
    Experiment,
    ExperimentExposure,
    ExperimentImpression,
    ExperimentLayer,
    ExperimentVariant,
)
from commerce.services._util import chosen_name, lookup_name, not_confusable, unlike_stored
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import as_utc, utcnow


def get_experiment(session: Session, name: str) -> Experiment:
    """The experiment a client names in any look-alike form of its name (`lookup_name`)."""
    exp = session.scalars(select(Experiment).where(Experiment.name == lookup_name(name))).one_or_none()
    if exp is None:
        raise NotFound(f"no experiment named {name!r}", code="experiment_not_found")
    return exp


def _variants(variants: Mapping[str, float] | Sequence[tuple]) -> list[tuple[str, float, dict | None]]:
    """Accept {name: weight} or [(name, weight[, config]), ...]; check names and weights."""
    items = list(variants.items()) if isinstance(variants, Mapping) else list(variants)
    out = []
    for item in items:
        name, weight, config = (*item, None) if len(item) == 2 else item
        name = chosen_name(str(name or ""), "variant name")  # `a`, `a` + U+200B, `ａ` were three look-alikes
        if not name or len(name) > 64:
            raise ValidationError(f"variant name {name!r} must be 1-64 characters")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValidationError(f"variant {name!r}: weight {weight!r} is not a number") from None
        if not 0 < weight <= MAX_VARIANT_WEIGHT:
            raise ValidationError(
                f"variant {name!r}: weight must be in (0, {MAX_VARIANT_WEIGHT:g}], got {weight}"
            )
        out.append((str(name), weight, config))
    if len(out) < 2:
        raise ValidationError("an experiment needs at least two variants")
    if len({n for n, _, _ in out}) != len(out):
        raise ValidationError("variant names must be unique")
    names = [n for n, _, _ in out]
    for i, name in enumerate(names):  # `a` and a Cyrillic `а`
        not_confusable(name, names[:i], "variant name")
    return out


def _free_slice(session: Session, layer: ExperimentLayer, share: float) -> tuple[float, float]:
    """The lowest gap of width `share` left by the layer's draft and running experiments."""
    taken = session.execute(
        select(Experiment.traffic_start, Experiment.traffic_end)
        .where(Experiment.layer_id == layer.id, Experiment.status != "stopped")
        .order_by(Experiment.traffic_start)
    ).all()
    start = 0.0
    for lo, hi in taken:
        if lo - start >= share - 1e-12:
            break
        start = max(start, hi)
    if start + share > 1.0 + 1e-12:
        used = sum(hi - lo for lo, hi in taken)
        raise Conflict(
            f"layer {layer.name!r} has no free slice of {share:.0%} "
            f"({used:.0%} is held by active experiments)",
            code="layer_full",
        )
    return start, min(start + share, 1.0)


def create_experiment(
    session: Session,
    name: str,
    variants: Mapping[str, float] | Sequence[tuple],
    *,
    layer: str | None = None,
    traffic: float = 1.0,
    salt: str | None = None,
    description: str = "",
    primary_metric: str = "conversion",
    planned_units_per_variant: int | None = None,
    inference: str = "fixed",
) -> Experiment:
    """A draft experiment. In a layer it takes the lowest free slice of width `traffic`; alone, it
    covers a `traffic` share of all units. The salt defaults to the name, which keeps assignment
    reproducible; give a fresh salt to reshuffle units for a rerun. `inference` fixes up front how
    results may be read (choosing it after seeing the data would defeat it)."""
    if inference not in INFERENCES:
        raise ValidationError(f"inference must be one of {INFERENCES}, got {inference!r}")
    if inference == "group-sequential" and planned_units_per_variant is None:
        raise ValidationError("group-sequential inference needs the planned units per variant")
    name = chosen_name(name, "experiment name")  # `promo` and `ｐｒｏｍｏ` were two experiments
    if not name or len(name) > 100:
        raise ValidationError("experiment name must be 1-100 characters")
    # `home` and `ｈｏｍｅ` were two layers: experiments meant to exclude each other overlapped
    if layer is not None:
        layer = chosen_name(layer, "layer")
    if not 0 < traffic <= 1:
        raise ValidationError(f"traffic must be in (0, 1], got {traffic}")
    if planned_units_per_variant is not None and planned_units_per_variant < 1:
        raise ValidationError("planned units per variant must be positive")
    parsed = _variants(variants)
    if session.scalars(select(Experiment.id).where(Experiment.name == name)).first() is not None:
        raise Conflict(f"experiment {name!r} already exists", code="experiment_exists")
    unlike_stored(session, name, Experiment.name, "experiment name", true())  # every experimenter sees all
    layer_row = None
    start, end = 0.0, traffic
    if layer is not None:
        # Locked until commit: two creates at once must not both read the same free slice (PostgreSQL;
        # SQLite's BEGIN IMMEDIATE already serializes writers)
        layer_row = session.scalars(
            select(ExperimentLayer).where(ExperimentLayer.name == layer).with_for_update()
        ).first()
        if layer_row is None:  # a look-alike of another layer would overlap the experiments it excludes
            unlike_stored(session, layer, ExperimentLayer.name, "layer", true())
            layer_row = ExperimentLayer(name=layer, salt=f"layer:{layer}:{secrets.token_hex(4)}")
            session.add(layer_row)
            session.flush()
        start, end = _free_slice(session, layer_row, traffic)
    exp = Experiment(
        name=name,
        description=description,
        salt=salt or name,
        layer=layer_row,
        traffic_start=start,
        traffic_end=end,
        primary_metric=primary_metric,
        planned_units_per_variant=planned_units_per_variant,
        inference=inference,
        status="draft",
        variants=[
            ExperimentVariant(name=n, weight=w, config=c, position=i) for i, (n, w, c) in enumerate(parsed)
        ],
    )
    session.add(exp)
    session.flush()
    return exp


def creation_detail(exp: Experiment) -> dict:
    """What an audit entry of `exp`'s creation records: its slice and its variants' configs (what a later
    start serves)."""
    return {
        "name": exp.name,
        "layer": exp.layer.name if exp.layer is not None else None,
        "traffic": [exp.traffic_start, exp.traffic_end],
        "variants": [{"name": v.name, "weight": v.weight, "config": v.config} for v in exp.variants],
    }


def _experiments(status: str | None):
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {STATUSES}, got {status!r}")
    query = select(Experiment).options(selectinload(Experiment.variants)).order_by(Experiment.id)
    return query if status is None else query.where(Experiment.status == status)


def list_experiments(
    session: Session, status: str | None = None, *, limit: int = 50, offset: int = 0
) -> Page[Experiment]:
    return paginate(session, _experiments(status), limit=limit, offset=offset)


def start_experiment(session: Session, name: str) -> Experiment:
    """draft -> running, with no cap checked: the API, the console and the CLI start through
    `serving.ab.start_experiment`, which bounds the running experiments and the aliases they serve."""
    exp = get_experiment(session, name)
    if exp.status != "draft":
        raise InvalidState(f"experiment {name!r} is {exp.status}; only a draft can start")
    exp.status, exp.started_at = "running", utcnow()
    session.flush()
    return exp


def stop_experiment(session: Session, name: str) -> Experiment:
    """Stop for good (its layer slice frees up); a stopped experiment keeps its exposures."""
    exp = get_experiment(session, name)
    if exp.status != "running":
        raise InvalidState(f"experiment {name!r} is {exp.status}; only a running experiment can stop")
    exp.status, exp.stopped_at = "stopped", utcnow()
    session.flush()
    return exp


def running_configs(session: Session) -> list[dict]:
    """Configs of every running experiment by id, for `ExperimentSpec.from_config` in the API replicas,
    with `started_at` (a replica serves those the start caps admit, in start order: `within_caps`)."""
    return [{**e.as_config(), "started_at": e.started_at} for e in session.scalars(_experiments("running"))]


def record_exposure(
    session: Session, experiment: str, variant: str, unit_id: str, ts: datetime | None = None
) -> bool:
    """Log that `unit_id` was shown `variant`; True for its first exposure, False if already logged.

    The unique (experiment, unit) key with ON CONFLICT DO NOTHING makes concurrent replicas safe.
    """
    exp = get_experiment(session, experiment)
    if exp.status != "running":
        raise InvalidState(f"experiment {experiment!r} is {exp.status}, not running")
    variant = lookup_name(variant)
    if variant not in {v.name for v in exp.variants}:
        raise ValidationError(f"experiment {experiment!r} has no variant {variant!r}")
    if not unit_id or len(unit_id) > 128:
        raise ValidationError("unit_id must be 1-128 characters")
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
    if insert is None:
        raise ValidationError(f"exposure logging supports PostgreSQL and SQLite, not {dialect}")
    stmt = (
        insert(ExperimentExposure)
        .values(
            experiment_id=exp.id, variant=variant, unit_id=str(unit_id), ts=as_utc(ts) if ts else utcnow()
        )
        .on_conflict_do_nothing(index_elements=["experiment_id", "unit_id"])
        .returning(ExperimentExposure.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def exposure_counts(session: Session, experiment: str) -> dict[str, int]:
    """Exposed units per variant (zero for variants nobody saw yet)."""
    exp = get_experiment(session, experiment)
    rows = session.execute(
        select(ExperimentExposure.variant, func.count())
        .where(ExperimentExposure.experiment_id == exp.id)
        .group_by(ExperimentExposure.variant)
    ).all()
    counts = {v.name: 0 for v in exp.variants}
    counts.update({v: int(n) for v, n in rows})
    return counts


def exposures(session: Session, experiment: str) -> list[dict]:
    """Every exposure as an event-log row (`event_type` = exposure) for the analysis."""
    exp = get_experiment(session, experiment)
    rows = session.scalars(
        select(ExperimentExposure)
        .where(ExperimentExposure.experiment_id == exp.id)
        .order_by(ExperimentExposure.id)
    )
    return [
        {
            "experiment": exp.name,
            "variant": r.variant,
            "unit_id": r.unit_id,
            "event_type": "exposure",
            "value": 0.0,
            "ts": r.ts,
        }
        for r in rows
    ]


IMPRESSION_FIELDS = ("page_id", "slot", "product_id", "team", "propensity")


def record_impressions(session: Session, experiment: str, variant: str, unit_id: str, rows, ts=None) -> int:
    """Store the products of one shown page (dicts with IMPRESSION_FIELDS); returns how many. A slot of a
    page already stored is skipped, so a page sent again (a retried batch) is kept once."""
    exp = get_experiment(session, experiment)
    if exp.status != "running":
        raise InvalidState(f"experiment {experiment!r} is {exp.status}, not running")
    variant = lookup_name(variant)
    if variant not in {v.name for v in exp.variants}:
        raise ValidationError(f"experiment {experiment!r} has no variant {variant!r}")
    when = as_utc(ts) if ts else utcnow()
    for row in rows:
        p = row.get("propensity")
        if p is not None and not 0 < p <= 1:
            raise ValidationError(f"propensity {p} is not in (0, 1]")
    if rows:
        session.execute(
            insert_ignore_stmt(session, ExperimentImpression.__table__, ["experiment_id", "page_id", "slot"]),
            [
                {
                    "experiment_id": exp.id,
                    "variant": variant,
                    "unit_id": str(unit_id),
                    "ts": when,
                    **{k: row.get(k) for k in IMPRESSION_FIELDS},
                }
                for row in rows
            ],
        )
    return len(rows)


def impressions(session: Session, experiment: str) -> list[dict]:
    """Every logged impression of an experiment, in order, as plain rows for the analysis."""
    exp = get_experiment(session, experiment)
    rows = session.scalars(
        select(ExperimentImpression)
        .where(ExperimentImpression.experiment_id == exp.id)
        .order_by(ExperimentImpression.id)
    )
    return [
        {
            "experiment": exp.name,
            "variant": r.variant,
            "unit_id": r.unit_id,
            "ts": r.ts,
            **{k: getattr(r, k) for k in IMPRESSION_FIELDS},
        }
        for r in rows
    ]


#: Behaviour events as the experiment analysis names them: a product view after a page is its click.
ANALYSIS_EVENT_TYPES = {"view": "click", "purchase": "purchase"}


def event_log(session: Session, experiment: str) -> list[dict]:
    """The experiment's analysis event log: its exposures, then the exposed shoppers' views (as
    clicks) and purchases since the experiment started, each under the shopper's variant. Exposure
    rows carry the segments of `pre_start_segments`."""
    from commerce.events import BehaviorEvent

    exp = get_experiment(session, experiment)
    rows = exposures(session, experiment)
    variant_of = {r["unit_id"]: r["variant"] for r in rows}
    if not variant_of or exp.started_at is None:
        return rows
    segments = pre_start_segments(session, exp.started_at, set(variant_of))
    for r in rows:
        r.update(segments[r["unit_id"]])
    query = select(BehaviorEvent).where(
        BehaviorEvent.event_type.in_(list(ANALYSIS_EVENT_TYPES)), BehaviorEvent.ts >= exp.started_at
    )
    if exp.stopped_at is not None:
        query = query.where(BehaviorEvent.ts <= exp.stopped_at)
    for e in session.scalars(query.order_by(BehaviorEvent.ts)):
        variant = variant_of.get(e.shopper_id)
        if variant is not None:
            rows.append(
                {
                    "experiment": exp.name,
                    "variant": variant,
                    "unit_id": e.shopper_id,
                    "event_type": ANALYSIS_EVENT_TYPES[e.event_type],
                    "value": float(e.value or 0.0),
                    "ts": e.ts,
                    "product_id": e.product_id,
                }
            )
    return rows


def pre_start_segments(session: Session, started_at: datetime, shoppers: set[str]) -> dict[str, dict]:
    """Per shopper, from purchases before `started_at`: `new_vs_returning`; `fulfillment` (bonded or
    direct_mail: what most of their purchases were, `none` without any); `price_level` (low, mid or
    high tertile of their mean order value among returning shoppers, `none` for new ones)."""
    from commerce.catalog import Product
    from commerce.events import BehaviorEvent

    bought = session.execute(
        select(BehaviorEvent.shopper_id, Product.fulfillment, BehaviorEvent.value)
        .outerjoin(Product, Product.product_id == BehaviorEvent.product_id)
        .where(BehaviorEvent.event_type == "purchase", BehaviorEvent.ts < started_at)
    ).all()
    modes: dict[str, dict[str, int]] = {}
    spend: dict[str, list[float]] = {}
    for shopper, mode, value in bought:
        if shopper in shoppers:
            spend.setdefault(shopper, []).append(float(value or 0.0))
            if mode is not None:
                modes.setdefault(shopper, {}).setdefault(mode, 0)
                modes[shopper][mode] += 1
    means = {s: sum(v) / len(v) for s, v in spend.items()}
    cuts = sorted(means.values())
    low, high = (cuts[len(cuts) // 3], cuts[2 * len(cuts) // 3]) if cuts else (0.0, 0.0)

    def level(s: str) -> str:
        if s not in means:
            return "none"
        return "low" if means[s] < low else "high" if means[s] >= high else "mid"

    return {
        s: {
            "new_vs_returning": "returning" if s in spend else "new",
            "fulfillment": max(modes[s], key=modes[s].get) if s in modes else "none",
            "price_level": level(s),
        }
        for s in shoppers
    }

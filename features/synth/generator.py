"""Write a whole synthetic marketplace to a directory, block of shoppers by block, with bounded memory.

Catalog-side tables are built once; shoppers are processed in fixed-size blocks (each with its own
random stream derived from the seed), so output is identical for a seed whatever the machine, and
peak memory depends on the block size, not on the scale.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from commerce.events import events_arrow_schema
from commerce.files import staged_directory
from features.synth.campaigns import ALL_COUPONS, CAMPAIGNS, CampaignRows, campaign_tables, run_campaigns
from features.synth.catalog import TS, Catalog, build_catalog
from features.synth.events import EVENT_TYPES, Events, organic_events
from features.synth.logistics import generate_shipments
from features.synth.model import ModelParams
from features.synth.reference import ORIGINS
from features.synth.shoppers import build_shoppers
from features.synth.timeline import US_PER_SECOND, Timeline

GENERATOR_VERSION = "1"
Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True)
class Scale:
    name: str
    n_shoppers: int
    n_products: int
    n_brands: int
    n_merchants: int
    sessions_per_shopper: float  # mean sessions of an average shopper over the whole period
    shoppers_per_part: int  # block size: one events part file per block


SCALES = {
    "tiny": Scale("tiny", 500, 200, 40, 20, 9.0, 500),
    "demo": Scale("demo", 20_000, 5_000, 250, 125, 11.0, 5_000),
    "large": Scale("large", 1_000_000, 200_000, 3_000, 1_500, 11.0, 10_000),
}


def _ids(prefix: str, numbers: np.ndarray, width: int, null: np.ndarray | None = None) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    ids = pc.binary_join_element_wise(prefix, text, "")
    return ids if null is None else pc.if_else(pa.array(null), pa.scalar(None, pa.string()), ids)


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return values.take(pa.array(idx, pa.int64(), mask=idx < 0))


EVENT_SCHEMA = events_arrow_schema()


def events_table(
    ev: Events, shopper_ids: pa.Array, catalog: Catalog, event_base: int, session_base: int, queries: pa.Array
) -> pa.Table:
    """Sort a block's events by time and attach string ids."""
    order = np.lexsort((np.arange(len(ev)), ev.ts))
    ev = ev.select(order)
    campaign_ids = pa.array([c.campaign_id for c in CAMPAIGNS], pa.string())
    coupon_ids = pa.array([c.coupon_id for c in ALL_COUPONS], pa.string())
    return pa.table(
        [
            _ids("E", event_base + np.arange(len(ev)), 10),
            pa.array(ev.ts, pa.int64()).cast(TS),
            _take(shopper_ids, ev.shopper),
            _take(catalog.product_ids, ev.product),
            pa.array(EVENT_TYPES, pa.string()).take(pa.array(ev.etype.astype(np.int64))),
            pa.array(ev.quantity, pa.int32()),
            pa.array(ev.value, pa.float64()),
            _ids("S", session_base + ev.session, 9, null=ev.session < 0),
            _take(campaign_ids, ev.campaign.astype(np.int64)),
            _take(coupon_ids, ev.coupon.astype(np.int64)),
            _take(queries, ev.query.astype(np.int64)),
        ],
        schema=EVENT_SCHEMA,
    )


def _campaign_tables(rows: CampaignRows, shopper_ids: pa.Array) -> tuple[pa.Table, pa.Table]:
    campaign_ids = [c.campaign_id for c in CAMPAIGNS]
    coupon_ids = pa.array([c.coupon_id for c in ALL_COUPONS] + ["control"], pa.string())
    assign = [
        pa.table(
            {
                "campaign_id": pa.array([campaign_ids[ci]] * len(who), pa.string()),
                "shopper_id": shopper_ids.take(pa.array(who)),
                "arm": coupon_ids.take(pa.array(np.where(arm < 0, len(ALL_COUPONS), arm))),
                "converted": pa.array(conv, pa.bool_()),
                "spend": pa.array(spend, pa.float64()),
                "redeemed": pa.array(red, pa.bool_()),
            }
        )
        for ci, who, arm, conv, spend, red in rows.assignments
    ]
    effects = []
    for ci, who, truth in rows.effects:
        for coupon, (p0, p1, s0, s1) in zip(CAMPAIGNS[ci].coupons, truth, strict=True):
            effects.append(
                pa.table(
                    {
                        "campaign_id": pa.array([campaign_ids[ci]] * len(who), pa.string()),
                        "shopper_id": shopper_ids.take(pa.array(who)),
                        "coupon_id": pa.array([coupon.coupon_id] * len(who), pa.string()),
                        "p_control": pa.array(p0, pa.float64()),
                        "p_treated": pa.array(p1, pa.float64()),
                        "true_uplift": pa.array(p1 - p0, pa.float64()),
                        "spend_control": pa.array(s0, pa.float64()),
                        "spend_treated": pa.array(s1, pa.float64()),
                    }
                )
            )
    return pa.concat_tables(assign), pa.concat_tables(effects)


class _Streams:
    """Parquet files written block by block."""

    def __init__(self, out: Path):
        self.out, self.writers, self.counts = out, {}, {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(self.out / name, table.schema)
            self.counts[name] = 0
        self.writers[name].write_table(table)
        self.counts[name] += table.num_rows

    def close(self) -> dict[str, int]:
        for w in self.writers.values():
            w.close()
        return self.counts


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / US_PER_SECOND, tz=UTC).isoformat()


def generate_marketplace(
    out: str | Path,
    scale: str | Scale = "tiny",
    seed: int = 0,
    *,
    timeline: Timeline | None = None,
    params: ModelParams | None = None,
    max_parts: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Generate the marketplace into `out` and return the manifest.

    `out` is published whole when every file is written (`commerce.files.staged_directory`: `out`
    becomes a link to the new version, the previous one kept until the next generation): a run that
    fails (a full disk, an interrupt) leaves the previous marketplace as it was, where it was left with
    its events replaced by the parts written so far. Files that are not the generator's (search logs
    simulated on the previous marketplace) are not carried over: they describe other data. A directory
    holding other files but no manifest.json is not a marketplace and is refused rather than replaced.

    `max_parts` stops after that many shopper blocks: a slice of a large scale, for memory checks.
    """
    if isinstance(scale, str) and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    out = Path(out)
    if out.is_dir() and not out.is_symlink() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise FileExistsError(
            f"{out} holds other files and no manifest.json (not a generated marketplace): generating"
            " replaces the directory whole, so choose a new or empty one"
        )
    sc = SCALES[scale] if isinstance(scale, str) else scale
    timeline, params = timeline or Timeline(), params or ModelParams()
    with staged_directory(out) as staging:
        return _generate(staging, sc, seed, timeline, params, max_parts, progress)


def _generate(
    out: Path,
    sc: Scale,
    seed: int,
    timeline: Timeline,
    params: ModelParams,
    max_parts: int | None,
    progress: Progress | None,
) -> dict:
    """`generate_marketplace` into the empty directory `out`."""
    (out / "events").mkdir()
    (out / "truth").mkdir()
    n_blocks = -(-sc.n_shoppers // sc.shoppers_per_part)
    if max_parts is not None:
        n_blocks = min(n_blocks, max_parts)
    total = n_blocks + 2
    report = progress or (lambda step, done, total: None)

    report("catalog", 0, total)
    seq = np.random.SeedSequence(seed)
    catalog = build_catalog(
        np.random.default_rng(seq.spawn(1)[0]), sc.n_products, sc.n_brands, sc.n_merchants, timeline
    )
    campaigns, coupons = campaign_tables(timeline, catalog.leaves.ids)
    counts = {}
    for name, table in [
        ("categories.parquet", catalog.categories),
        ("merchants.parquet", catalog.merchants),
        ("products.parquet", catalog.products),
        ("campaigns.parquet", campaigns),
        ("coupons.parquet", coupons),
        ("truth/brands.parquet", catalog.brands),
        ("truth/products.parquet", catalog.product_truth),
    ]:
        pq.write_table(table, out / name)
        counts[name] = table.num_rows
    lo, hi = timeline.season_us
    seasons = pa.table(
        {
            "season_id": ["SEA01"],
            "name": [timeline.season_name],
            "start": pa.array([lo], pa.int64()).cast(TS),
            "end": pa.array([hi], pa.int64()).cast(TS),
            "discount": pa.array([timeline.discount], pa.float64()),
        }
    )
    pq.write_table(seasons, out / "seasons.parquet")
    counts["seasons.parquet"] = 1
    queries = pa.array(catalog.leaves.names + catalog.brand_names, pa.string())
    report("catalog", 1, total)

    streams = _Streams(out)
    event_base = session_base = 0
    block_seeds = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(n_blocks)
    for b in range(n_blocks):
        rng = np.random.default_rng(block_seeds[b])
        first = b * sc.shoppers_per_part
        n = min(sc.shoppers_per_part, sc.n_shoppers - first)
        block = build_shoppers(rng, first, n, timeline, catalog.leaves)
        ev, n_sess = organic_events(
            rng, block.tastes, block.created_us, catalog, params, timeline, sc.sessions_per_shopper
        )
        ev, rows, n_sess = run_campaigns(
            rng, ev, block.tastes, block.segment, block.created_us, catalog, params, timeline, n_sess
        )
        table = events_table(ev, block.shopper_ids, catalog, event_base, session_base, queries)
        pq.write_table(table, out / "events" / f"part-{b:05d}.parquet")
        counts["events"] = counts.get("events", 0) + table.num_rows
        event_base += table.num_rows
        session_base += n_sess
        streams.write("shoppers.parquet", block.shoppers)
        streams.write("identities.parquet", block.identities)
        streams.write("truth/tastes.parquet", block.truth)
        assignments, effects = _campaign_tables(rows, block.shopper_ids)
        streams.write("assignments.parquet", assignments)
        streams.write("truth/coupon_effects.parquet", effects)
        report("shoppers and events", b + 2, total)
    counts.update(streams.close())
    counts.update(generate_shipments(out, seed))

    (out / "truth" / "categories_order.json").write_text(
        json.dumps({"categories": catalog.leaves.ids, "origins": list(ORIGINS)}, indent=2) + "\n"
    )
    (out / "truth" / "model.json").write_text(
        json.dumps(
            {
                "params": params.to_dict(),
                "timeline": asdict(timeline),
                "leaf_median_price": dict(
                    zip(catalog.leaves.ids, catalog.leaves.median_price.tolist(), strict=True)
                ),
            },
            indent=2,
        )
        + "\n"
    )
    manifest = {
        "scale": sc.name,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "counts": dict(sorted(counts.items())),
        "start": _iso(timeline.start_us),
        "end": _iso(timeline.end_us),
        "parts": n_blocks,
        "complete": n_blocks * sc.shoppers_per_part >= sc.n_shoppers,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    report("done", total, total)
    return manifest

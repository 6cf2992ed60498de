"""Shoppers: public attributes (region, segment, sign-up time), identities and latent tastes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.synth.catalog import TS, Leaves
from features.synth.model import N_LATENT, Tastes
from features.synth.reference import GIVEN_CHARS, ORIGINS, REGIONS, SEGMENTS, SURNAMES
from features.synth.timeline import US_PER_DAY, Timeline

ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK_CHARS = np.frombuffer(b"10X98765432", dtype=np.uint8)
SEGMENT_NAMES = tuple(SEGMENTS)
REGION_NAMES = tuple(REGIONS)
JOIN_DURING_PERIOD = 0.15  # share of shoppers who sign up inside the simulated period


def id_numbers(rng: np.random.Generator, region_codes: np.ndarray) -> np.ndarray:
    """Check-digit-valid 18-character resident ID numbers (district, birth date, sequence, check)."""
    n = len(region_codes)
    birth = np.datetime64("1962-01-01") + rng.integers(0, 43 * 365, n).astype("timedelta64[D]")
    date = np.char.replace(np.datetime_as_string(birth, unit="D"), "-", "")
    seq = np.char.zfill(rng.integers(0, 1000, n).astype(str), 3)
    first17 = np.char.add(np.char.add(region_codes.astype(str), date), seq)
    digits = np.frombuffer(first17.astype("S17").tobytes(), dtype=np.uint8).reshape(n, 17) - ord("0")
    check = ID_CHECK_CHARS[(digits.astype(np.int64) @ ID_WEIGHTS) % 11]
    return np.char.add(first17, check.view("S1").astype(str))


@dataclass(frozen=True)
class ShopperBlock:
    """One chunk of shoppers, with everything later steps need."""

    shopper_ids: pa.Array
    segment: np.ndarray  # str
    created_us: np.ndarray
    tastes: Tastes
    shoppers: pa.Table
    identities: pa.Table
    truth: pa.Table  # rows of truth/tastes.parquet


def _dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    g = rng.gamma(alpha)
    return g / np.maximum(g.sum(axis=1, keepdims=True), 1e-300)


def build_shoppers(
    rng: np.random.Generator, first: int, n: int, timeline: Timeline, lv: Leaves
) -> ShopperBlock:
    shares = np.array([s[0] for s in SEGMENTS.values()])
    seg = rng.choice(len(SEGMENT_NAMES), n, p=shares / shares.sum())
    root_w = np.array([s[1] for s in SEGMENTS.values()], dtype=np.float64)  # (segments, roots)
    leaves_per_root = np.bincount(lv.root)
    prior = root_w[:, lv.root] / leaves_per_root[lv.root]
    prior /= prior.sum(axis=1, keepdims=True)
    # A sparse Dirichlet around the segment prior: each shopper cares about a handful of leaves.
    cat = 0.97 * _dirichlet(rng, 2.5 * prior[seg]) + 0.03 * prior[seg]
    origin = 0.95 * _dirichlet(rng, np.full((n, len(ORIGINS)), 0.6)) + 0.05 / len(ORIGINS)
    latent = rng.normal(0.0, 1.0 / np.sqrt(N_LATENT), (n, N_LATENT))
    beta = np.array([s[2] for s in SEGMENTS.values()])
    ps = rng.beta(beta[seg, 0], beta[seg, 1])
    loyalty = rng.beta(2.0, 2.0, n)
    activity = rng.lognormal(-0.32, 0.8, n)  # mean 1
    tastes = Tastes(
        cat.astype(np.float32).astype(np.float64),
        origin.astype(np.float32).astype(np.float64),
        latent.astype(np.float32).astype(np.float64),
        ps,
        loyalty,
        activity,
    )

    joined = rng.random(n) < JOIN_DURING_PERIOD
    created = np.where(
        joined,
        timeline.start_us + rng.integers(0, (timeline.days - 1) * US_PER_DAY, n),
        timeline.start_us - rng.integers(1, 3 * 365 * US_PER_DAY, n),
    )
    reg_p = np.array([r[1] for r in REGIONS.values()])
    region = rng.choice(len(REGION_NAMES), n, p=reg_p / reg_p.sum())
    ids = pa.array([f"U{i:07d}" for i in range(first, first + n)], pa.string())
    segment = np.array(SEGMENT_NAMES)[seg]
    shoppers = pa.table(
        {
            "shopper_id": ids,
            "region": pa.array(np.array(REGION_NAMES)[region].tolist(), pa.string()),
            "segment": pa.array(segment.tolist(), pa.string()),
            "created_at": pa.array(created, pa.int64()).cast(TS),
        }
    )
    n_given = 1 + (rng.random(n) < 0.7)
    s_idx = rng.integers(0, len(SURNAMES), n)
    g_idx = rng.integers(0, len(GIVEN_CHARS), (n, 2))
    names = [
        SURNAMES[s] + GIVEN_CHARS[g[0]] + (GIVEN_CHARS[g[1]] if k == 2 else "")
        for s, g, k in zip(s_idx, g_idx, n_given, strict=True)
    ]
    codes = np.array([c for c, _ in REGIONS.values()])[region]
    identities = pa.table(
        {
            "shopper_id": ids,
            "real_name": pa.array(names, pa.string()),
            "id_number": pa.array(id_numbers(rng, codes).tolist(), pa.string()),
        }
    )
    f32 = pa.list_(pa.float32())
    truth = pa.table(
        {
            "shopper_id": ids,
            "category_affinity": pa.array(list(tastes.category_affinity.astype(np.float32)), f32),
            "origin_affinity": pa.array(list(tastes.origin_affinity.astype(np.float32)), f32),
            "price_sensitivity": pa.array(ps, pa.float64()),
            "brand_loyalty": pa.array(loyalty, pa.float64()),
            "activity": pa.array(activity, pa.float64()),
            "latent": pa.array(list(tastes.latent.astype(np.float32)), f32),
        }
    )
    return ShopperBlock(ids, segment, created, tastes, shoppers, identities, truth)

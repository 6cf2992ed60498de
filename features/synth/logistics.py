"""Simulated logistics: parcel weights and, for every purchase, a shipment with a realistic delivery time.

The truth each partner follows (hidden from the models, written to `truth/logistics.json`):
- a transit time that grows with the zone distance from the East China hub (bonded zones near
  Hangzhou/Ningbo, and the Shanghai entry port for direct mail), with partner-specific spread;
- warehouse cut-off at 16:00 China time; partners that do not work Sundays pick up on Monday;
- direct mail adds customs clearance (gamma distributed) and random inspections that hold a parcel
  for days;
- the discount season (and the five days after it) slows every partner by its own peak factor;
- partners without weekend delivery hold parcels that arrive on a Sunday until Monday.
Partners differ in the cost/speed trade-off: compare with `commerce.services.logistics.DEFAULT_RATES`.
The historical partner of each shipment is drawn uniformly among the partners of its mode, so the
history covers every partner and lane (a randomized log, as a rate-shopping experiment would give).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from commerce.logistics import ZONES, zone_of

CHINA_UTC_OFFSET_H = 8
CUTOFF_HOUR = 16
PICKUP_HOUR = 18
DELIVERY_HOUR = 10
PEAK_TAIL_DAYS = 5
ZONE_DISTANCE = {"east": 0, "central": 1, "north": 1, "south": 1, "west": 2, "remote": 3}
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class PartnerTruth:
    partner_id: str
    mode: str
    base_days: float
    days_per_zone: float
    sigma: float  # log-normal spread of the line-haul time
    sunday_pickup: bool
    weekend_delivery: bool
    peak_factor: float  # line-haul multiplier in the discount season
    customs_days: float = 0.0  # mean clearance time (direct mail)
    inspection_rate: float = 0.0
    inspection_days: float = 0.0


PARTNERS = (
    PartnerTruth("sf-bonded", "bonded", 0.8, 0.45, 0.25, True, True, 1.25),
    PartnerTruth("cainiao-bonded", "bonded", 1.2, 0.6, 0.35, True, True, 1.6),
    PartnerTruth("yto-bonded", "bonded", 1.8, 0.9, 0.4, False, False, 1.8),
    PartnerTruth("dhl-express", "direct_mail", 2.2, 0.25, 0.2, True, True, 1.2, 0.8, 0.03, 2.0),
    PartnerTruth("cainiao-global", "direct_mail", 3.5, 0.4, 0.3, True, True, 1.5, 1.5, 0.05, 4.0),
    PartnerTruth("ems-intl", "direct_mail", 4.5, 0.5, 0.45, False, False, 1.8, 2.0, 0.08, 5.0),
)
PARTNER_INDEX = {p.partner_id: i for i, p in enumerate(PARTNERS)}


def product_parcels(rng: np.random.Generator, product_ids: np.ndarray) -> pd.DataFrame:
    """Shipping weight (g) and packed volume (cm3) per product: log-normal, most parcels 0.2-2 kg."""
    weight = np.clip(np.round(rng.lognormal(np.log(600), 0.7, len(product_ids))), 50, 20_000).astype(int)
    volume = np.round(weight * rng.uniform(1.5, 9.0, len(product_ids))).astype(int)
    return pd.DataFrame({"product_id": product_ids, "weight_g": weight, "volume_cm3": volume})


def _local_days(us: np.ndarray) -> np.ndarray:
    """Fractional days since the epoch, China time."""
    return us / DAY_US + CHINA_UTC_OFFSET_H / 24


def simulate_delivery_days(
    rng: np.random.Generator,
    partner: np.ndarray,
    zone: np.ndarray,
    ordered_us: np.ndarray,
    peak_windows_us: list[tuple[int, int]],
) -> np.ndarray:
    """Days from order to delivery for each parcel (`partner` indexes PARTNERS, `zone` names zones)."""
    n = len(partner)
    p = [PARTNERS[i] for i in range(len(PARTNERS))]
    base = np.array([x.base_days for x in p])[partner]
    per_zone = np.array([x.days_per_zone for x in p])[partner]
    sigma = np.array([x.sigma for x in p])[partner]
    sunday_pickup = np.array([x.sunday_pickup for x in p])[partner]
    weekend_delivery = np.array([x.weekend_delivery for x in p])[partner]
    peak = np.array([x.peak_factor for x in p])[partner]
    customs = np.array([x.customs_days for x in p])[partner]
    inspect_rate = np.array([x.inspection_rate for x in p])[partner]
    inspect_days = np.array([x.inspection_days for x in p])[partner]
    distance = np.array([ZONE_DISTANCE[z] for z in zone], dtype=float)

    local = _local_days(ordered_us.astype(np.float64))
    day = np.floor(local)
    pickup = day + np.where(local - day < CUTOFF_HOUR / 24, 0, 1) + PICKUP_HOUR / 24
    weekday = (np.floor(pickup).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3); Sunday = 6
    pickup += np.where((weekday == 6) & ~sunday_pickup, 1, 0)
    pickup_us = (pickup - CHINA_UTC_OFFSET_H / 24) * DAY_US
    in_peak = np.zeros(n, dtype=bool)
    for lo, hi in peak_windows_us:
        in_peak |= (pickup_us >= lo) & (pickup_us < hi + PEAK_TAIL_DAYS * DAY_US)
    haul = (base + per_zone * distance) * rng.lognormal(0.0, sigma) * np.where(in_peak, peak, 1.0)
    clearance = np.where(customs > 0, rng.gamma(2.0, np.maximum(customs, 1e-9) / 2.0), 0.0)
    held = np.where(rng.random(n) < inspect_rate, rng.uniform(0.5, 1.5, n) * inspect_days, 0.0)
    arrival = pickup + haul + clearance + held
    arrival_weekday = (np.floor(arrival).astype(np.int64) + 3) % 7
    to_monday = np.where(arrival_weekday == 6, 1, np.where(arrival_weekday == 5, 2, 0))
    held_weekend = ~weekend_delivery & (to_monday > 0)
    arrival = np.where(held_weekend, np.floor(arrival) + to_monday + DELIVERY_HOUR / 24, arrival)
    return arrival - local


def generate_shipments(market_dir: str | Path, seed: int = 0) -> dict:
    """Write `product_parcels.parquet`, `shipments.parquet` and `truth/logistics.json` for a marketplace."""
    market_dir = Path(market_dir)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    products = pd.read_parquet(market_dir / "products.parquet", columns=["product_id", "fulfillment"])
    parcels = product_parcels(rng, products["product_id"].to_numpy())
    parcels.to_parquet(market_dir / "product_parcels.parquet", index=False)
    shoppers = pd.read_parquet(market_dir / "shoppers.parquet", columns=["shopper_id", "region"])
    # only the purchases are read (a row filter in the Parquet scan): the whole log of the `large`
    # scale (~51M events) would take over 10 GB in pandas
    buys = pd.read_parquet(
        market_dir / "events",
        columns=["event_id", "ts", "shopper_id", "product_id", "quantity"],
        filters=[("event_type", "==", "purchase")],
    )
    buys = (
        buys.merge(products, on="product_id").merge(shoppers, on="shopper_id").merge(parcels, on="product_id")
    )
    buys = buys.sort_values("event_id").reset_index(drop=True)
    seasons = pd.read_parquet(market_dir / "seasons.parquet")
    peaks = [
        (int(s.value // 1000), int(e.value // 1000))
        for s, e in zip(seasons["start"], seasons["end"], strict=True)
    ]
    modes = buys["fulfillment"].to_numpy()
    partner = np.empty(len(buys), dtype=np.int64)
    for mode in ("bonded", "direct_mail"):
        options = np.array([i for i, p in enumerate(PARTNERS) if p.mode == mode])
        rows = np.flatnonzero(modes == mode)
        partner[rows] = rng.choice(options, size=len(rows))
    zone = np.array([zone_of(r) for r in buys["region"]])
    ordered_us = ((buys["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).to_numpy()
    days = simulate_delivery_days(rng, partner, zone, ordered_us, peaks)
    quantity = buys["quantity"].clip(lower=1).to_numpy()
    shipments = pd.DataFrame(
        {
            "shipment_id": [f"SH{i:09d}" for i in range(len(buys))],
            "event_id": buys["event_id"].to_numpy(),
            "product_id": buys["product_id"].to_numpy(),
            "partner_id": [PARTNERS[i].partner_id for i in partner],
            "mode": modes,
            "region": buys["region"].to_numpy(),
            "zone": zone,
            "weight_g": buys["weight_g"].to_numpy() * quantity,
            "ordered_at": buys["ts"],
            "delivered_at": (buys["ts"] + pd.to_timedelta(days, unit="D")).to_numpy(),
            "delivery_days": days,
        }
    )
    shipments.to_parquet(market_dir / "shipments.parquet", index=False)
    (market_dir / "truth").mkdir(exist_ok=True)
    (market_dir / "truth" / "logistics.json").write_text(
        json.dumps({"partners": [asdict(p) for p in PARTNERS], "zones": ZONES}, indent=2) + "\n"
    )
    return {"shipments.parquet": len(shipments), "product_parcels.parquet": len(parcels)}

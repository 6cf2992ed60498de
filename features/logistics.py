"""Features of a parcel for delivery-time prediction: who carries it, where to, how heavy, and when.

Times are read in China time (UTC+8), where warehouse cut-offs and weekends happen. A peak window is a
discount season; parcels ordered in it, or up to `PEAK_TAIL_DAYS` after, meet the season's backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

PEAK_TAIL_DAYS = 5
CHINA_TZ = "Asia/Shanghai"
FEATURES = ("partner_id", "zone", "weight_kg", "weekday", "hour", "in_peak", "peak_day")
CATEGORICAL = ("partner_id", "zone")


def delivery_features(
    parcels: pd.DataFrame, peak_windows: Sequence[tuple[datetime, datetime]] = ()
) -> pd.DataFrame:
    """One feature row per parcel from its `partner_id`, `zone`, `weight_g` and `ordered_at` (UTC)."""
    missing = {"partner_id", "zone", "weight_g", "ordered_at"} - set(parcels.columns)
    if missing:
        raise ValueError(f"parcels need the columns {sorted(missing)}")
    ordered = pd.to_datetime(parcels["ordered_at"], utc=True)
    local = ordered.dt.tz_convert(CHINA_TZ)
    in_peak = pd.Series(False, index=parcels.index)
    peak_day = pd.Series(-1.0, index=parcels.index)
    for start, end in peak_windows:
        start, end = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
        inside = (ordered >= start) & (ordered < end + pd.Timedelta(days=PEAK_TAIL_DAYS))
        in_peak |= inside
        peak_day = peak_day.where(~inside, (ordered - start).dt.total_seconds() / 86_400)
    return pd.DataFrame(
        {
            "partner_id": parcels["partner_id"].astype(str),
            "zone": parcels["zone"].astype(str),
            "weight_kg": parcels["weight_g"].astype(float) / 1000,
            "weekday": local.dt.weekday.astype(int),
            "hour": local.dt.hour + local.dt.minute / 60,
            "in_peak": in_peak.astype(int),
            "peak_day": peak_day,
        },
        index=parcels.index,
    )

"""Replenishment hints for a merchant's bonded stock: weekly demand per product and warehouse from paid
orders, forecast forward, against the unreserved units on hand (models.forecast.replenishment)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy.orm import Session

from commerce.services.logistics import merchant_bonded_sales, merchant_bonded_stock
from features.sales import demand_series
from models.forecast.replenishment import replenishment_plan

HISTORY_WEEKS = 52
SEP = "\x1f"  # joins product and warehouse into one series id; never part of an id


def merchant_replenishment(
    session: Session,
    merchant_id: str,
    at: datetime,
    *,
    horizon: int = 4,
    lead_time: int = 2,
    service_level: float = 0.95,
) -> list[dict]:
    sales = merchant_bonded_sales(session, merchant_id, at - timedelta(weeks=HISTORY_WEEKS))
    stock = merchant_bonded_stock(session, merchant_id)
    available = pd.Series({f"{p}{SEP}{loc}": units for p, loc, units in stock}, dtype=float)
    frame = pd.DataFrame(sales, columns=["product_id", "location", "ts", "quantity"])
    frame = frame[(frame["product_id"] + SEP + frame["location"]).isin(available.index)]
    if frame.empty:
        series = pd.DataFrame(columns=["unique_id", "ds", "y"])
    else:
        lines = pd.DataFrame(
            {
                "item_id": frame["product_id"] + SEP + frame["location"],
                "ts": pd.to_datetime(frame["ts"], utc=True),
                "quantity": frame["quantity"].astype(float),
            }
        )
        series = demand_series(lines, "W", until=at)
    plan = replenishment_plan(
        series, available, freq="W", horizon=horizon, lead_time=lead_time, service_level=service_level
    )
    planned = set(plan["unique_id"])
    rows = [
        {"product_id": item.split(SEP)[0], "location": item.split(SEP)[1], **row}
        for item, row in ((r.pop("unique_id"), r) for r in plan.to_dict(orient="records"))
    ]
    # stock that never sold in the window: nothing to forecast, nothing to reorder
    for item, units in available.items():
        if item not in planned:
            product_id, location = item.split(SEP)
            rows.append(
                {
                    "product_id": product_id, "location": location, "forecast": [0.0] * horizon,
                    "lead_time_demand": 0.0, "safety_stock": 0.0, "reorder_point": 0.0, "order_up_to": 0.0,
                    "available": float(units), "reorder": False, "reorder_qty": 0,
                }
            )  # fmt: skip
    return sorted(rows, key=lambda r: (-r["reorder_qty"], r["product_id"], r["location"]))

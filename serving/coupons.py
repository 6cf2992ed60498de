"""Rank a shopper's eligible coupons by expected incremental value.

The uplift model is the registered `Settings.uplift_model_name`, a `ServedCouponUplift` loaded by
`training.uplift.load_uplift_version`; its contract is `predict(DataFrame[shopper_id, coupon_id,
kind]) -> uplift`, the rise in purchase probability the coupon causes for that shopper. A coupon's
expected incremental value on a page is uplift x (value of the context goods after the discount).
Without a loaded model the coupons are ranked by the saving they give, and the response says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from commerce.coupons import Coupon
from commerce.errors import ValidationError
from commerce.services.coupons import PricedLine, discount_for
from serving.model_store import ModelSnapshot


@dataclass(frozen=True)
class Scored:
    coupon: Coupon
    discount: Decimal | None
    uplift: float | None
    value: float | None


def rank_coupons(
    coupons: list[Coupon],
    lines: list[PricedLine],
    shopper_id: str,
    uplift: ModelSnapshot,
    features: pd.DataFrame | None = None,
) -> list[Scored]:
    """Coupons that apply to `lines` (all of them when `lines` is empty), best first. `features`: the
    shopper's current features (one row, the model's columns; `marketing.audience.current_features`),
    which the model scores with; without them the shopper is scored as a newcomer."""
    applicable: list[tuple[Coupon, Decimal | None]] = []
    for coupon in coupons:
        if not lines:
            applicable.append((coupon, None))
            continue
        try:
            applicable.append((coupon, discount_for(coupon, lines)[0]))
        except ValidationError:  # out of scope or under the minimum spend for these goods
            continue
    if not applicable:
        return []
    basket = float(sum((line.amount for line in lines), Decimal(0)))
    if uplift.recommender is None:
        saving = [float(d) if d is not None else float(c.value) for c, d in applicable]
        order = np.argsort(-np.asarray(saving), kind="stable")
        return [Scored(applicable[i][0], applicable[i][1], None, None) for i in order]
    frame = pd.DataFrame(
        {
            "shopper_id": shopper_id,
            "coupon_id": [c.coupon_id for c, _ in applicable],
            "kind": [c.kind for c, _ in applicable],  # prices coupons the model has never seen
        }
    )
    if features is not None and len(features):
        row = features.iloc[0]
        frame = frame.assign(**{str(c): float(row[c]) for c in features.columns})
    predicted = np.asarray(uplift.recommender.predict(frame), dtype=float).reshape(-1)
    values = [
        float(u) * (basket - float(d if d is not None else 0)) if lines else float(u)
        for u, (_, d) in zip(predicted, applicable, strict=True)
    ]
    order = np.argsort(-np.asarray(values), kind="stable")
    return [Scored(applicable[i][0], applicable[i][1], float(predicted[i]), values[i]) for i in order]

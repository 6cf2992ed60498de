"""A completed randomised campaign in the database, for the plan views' policy value tests: shoppers
drawn at random into the holdout or one of the campaign's coupons, with the probabilities logged, and
orders and redemptions drawn from known conversion rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from commerce.coupons import CouponRedemption
from commerce.db import transaction
from commerce.services import campaigns as cmp
from commerce.services.coupons import CouponInput, create_coupon
from commerce.services.logistics import seed_default_partners
from commerce.services.shoppers import create_shopper
from commerce.shoppers import Shopper
from tests.uplift.test_campaigns_db import order

PAST_START = datetime(2026, 3, 1, tzinfo=UTC)


def store_randomized_campaign(
    factory,
    shoppers: list[str],
    *,
    campaign_id: str = "PAST-1",
    coupons: tuple[tuple[str, str, str], ...] = (("P30", "30", "199"),),
    control_share: float = 0.5,
    p_control: float = 0.1,
    p_coupon: float = 0.5,
    basket: float = 250.0,
    log_probabilities: bool = True,
    start: datetime = PAST_START,
    seed: int = 0,
) -> dict[str, str]:
    """A completed campaign over `shoppers` (created when missing): holdout with `control_share`, else
    one of the amount-off `coupons` (id, value, min spend) uniformly; buyers spend `basket` (>= every
    minimum spend), with probability `p_coupon` under a coupon (always redeemed) and `p_control`
    without, in the week from `start`. Returns each shopper's arm."""
    rng = np.random.default_rng(seed)
    ids = [c[0] for c in coupons]
    arms = np.where(rng.random(len(shoppers)) < control_share, "control", rng.choice(ids, len(shoppers)))
    design = {"control": control_share, **{c: (1 - control_share) / len(ids) for c in ids}}
    end = start + timedelta(days=7)
    with transaction(factory) as s:
        seed_default_partners(s)
        for shopper in shoppers:
            if s.get(Shopper, shopper) is None:
                create_shopper(s, shopper, "Shanghai")
        cmp.create_campaign(
            s, cmp.CampaignInput("Past", "email", "1000", start, end, str(control_share), campaign_id)
        )
        for cid, value, min_spend in coupons:
            create_coupon(
                s,
                CouponInput(
                    kind="amount_off",
                    value=value,
                    min_spend=min_spend,
                    campaign_id=campaign_id,
                    requires_grant=True,
                    coupon_id=cid,
                ),
            )
        audience = list(zip(shoppers, arms.tolist(), strict=True))
        probabilities = {sh: design for sh in shoppers} if log_probabilities else None
        cmp.set_audience(s, campaign_id, audience, arm_probabilities=probabilities)
        cmp.schedule_campaign(s, campaign_id, at=start)
        cmp.start_campaign(s, campaign_id, at=start)
        values = dict(zip(ids, (float(c[1]) for c in coupons), strict=True))
        for shopper, arm in audience:
            if rng.random() < (p_control if arm == "control" else p_coupon):
                s.add(order(shopper, f"{basket:.2f}", start + timedelta(days=1)))
                if arm != "control":
                    s.add(
                        CouponRedemption(
                            coupon_id=arm,
                            shopper_id=shopper,
                            amount=Decimal(f"{values[arm]:.2f}"),
                            redeemed_at=start,
                        )
                    )
        cmp.complete_campaign(s, campaign_id, at=end)
    return dict(audience)

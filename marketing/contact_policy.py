"""Who a new campaign may contact: at most one live campaign coupon per shopper, and a frequency cap.

A shopper already in the treated audience of another scheduled or running campaign whose window
overlaps this one holds (or is about to hold) a live campaign coupon, so is left out: two coupons
at once cost twice and the second adds little. A shopper with `frequency_cap` other campaign contacts
within `window_days` of this campaign's start, before or after it, is left out too: responses fall
with recent grants (coupon fatigue, simulated in `marketing.closed_loop`), and the planner's effect
model would price the next grant as if it were the first. The holdout (arm `control`) holds no
coupon and counts for neither rule. Both rules are `commerce.services.campaigns`' (scheduling
enforces them, under its lock, whatever order campaigns are planned in); this module names them for
the planner.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from commerce.campaigns import Campaign
from commerce.services.campaigns import ContactPolicy, frequency_capped, live_coupon_holders

__all__ = ["ContactPolicy", "contact_exclusions"]


def contact_exclusions(session: Session, campaign: Campaign, policy: ContactPolicy) -> dict[str, set[str]]:
    """{"live_coupon": shoppers, "frequency_cap": shoppers} that `campaign` must not contact."""
    return {
        "live_coupon": live_coupon_holders(session, campaign),
        "frequency_cap": frequency_capped(session, campaign, policy),
    }

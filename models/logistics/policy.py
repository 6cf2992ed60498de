"""Rate shopping: which partner ships an order, from each option's cost and predicted delivery time.

The rule merchants set: the cheapest partner whose 80% delivery quantile is within `max_days`, so the
promise "arrives within N days" holds for at least 80% of orders; when no partner can promise that, the
fastest (by the same quantile) ships it, as a merchant in a hurry would want.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class ShippingOption:
    partner_id: str
    cost: Decimal
    promise_days: float  # the 80% quantile of days to delivery


def fastest(options: list[ShippingOption]) -> ShippingOption:
    if not options:
        raise ValueError("no shipping options")
    return min(options, key=lambda o: (o.promise_days, o.cost, o.partner_id))


def cheapest_within(options: list[ShippingOption], max_days: float) -> ShippingOption:
    on_time = [o for o in options if o.promise_days <= max_days]
    if not on_time:
        return fastest(options)
    return min(on_time, key=lambda o: (o.cost, o.promise_days, o.partner_id))

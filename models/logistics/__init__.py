"""Logistics models: delivery-time quantiles and the rate-shopping rule that uses them."""

from commerce.services.logistics import ShippingOption, cheapest_within, fastest  # the rule lives there
from models.logistics.delivery import DeliveryTimeModel, quantile_column

__all__ = ["DeliveryTimeModel", "quantile_column", "ShippingOption", "cheapest_within", "fastest"]

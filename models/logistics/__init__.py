"""Logistics models: delivery-time quantiles and the rate-shopping rule that uses them."""

from models.logistics.delivery import DeliveryTimeModel, quantile_column
from models.logistics.policy import ShippingOption, cheapest_within, fastest

__all__ = ["DeliveryTimeModel", "quantile_column", "ShippingOption", "cheapest_within", "fastest"]

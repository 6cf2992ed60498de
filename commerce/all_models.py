"""Import every ORM module so `commerce.db.Base.metadata` is complete (Alembic, create_all, tests).

Modules owned by other parts of the project are imported when present.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

from commerce.db import Base

CORE_MODULES = (
    "commerce.merchants",
    "commerce.catalog",
    "commerce.shoppers",
    "commerce.promotions",
    "commerce.campaigns",  # coupons.campaign_id references it
    "commerce.coupons",
    "commerce.logistics",
    "commerce.orders",
    "commerce.events",
    "commerce.idempotency",
    "commerce.refunds",
    "commerce.audit",
    "commerce.ads",
)
OPTIONAL_MODULES = ("commerce.access", "commerce.experiments")

for _name in CORE_MODULES:
    import_module(_name)
for _name in OPTIONAL_MODULES:
    if find_spec(_name) is not None:
        import_module(_name)

metadata = Base.metadata

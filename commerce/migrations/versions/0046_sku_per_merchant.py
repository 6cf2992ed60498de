"""sku per merchant: a product's SKU is unique among its merchant's products, not the marketplace's

A SKU is the merchant's own code, but `products.sku` was unique across every merchant. Listing a product
under a SKU a rival used was 409 `duplicate_sku`, so a merchant learnt which codes rivals use (a pending
merchant's hidden product too) and could take a SKU first to keep a rival from using it. The unique
constraint on (sku) becomes one on (merchant_id, sku). Downgrade restores the old one, and refuses while
two merchants use one SKU: change or remove one of them first.

On SQLite, changing the constraint copies the table. As 0040 does for merchants, the rows are set aside
and come back into the new table under foreign keys deferred to the commit (stock, order lines, ads,
price windows and placements refer to their product; none cascades), and the table's trigger (0038:
product id skeleton required), which the copy drops, is read before and created again after.

Revision ID: 0046_sku_per_merchant
Revises: 0045_open_campaign_product
Create Date: 2026-12-03 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0046_sku_per_merchant"
down_revision: str | None = "0045_open_campaign_product"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GLOBAL = "uq_products_sku"
PER_MERCHANT = "uq_products_merchant_id_sku"
SHARED = "SELECT sku FROM products GROUP BY sku HAVING COUNT(*) > 1 ORDER BY sku LIMIT 5"


def upgrade() -> None:
    def alter(batch_op):
        batch_op.drop_constraint(GLOBAL, type_="unique")
        batch_op.create_unique_constraint(PER_MERCHANT, ["merchant_id", "sku"])

    _alter_products(alter)


def downgrade() -> None:
    if shared := op.get_bind().execute(sa.text(SHARED)).scalars().all():
        raise RuntimeError(
            f"cannot make SKUs unique across merchants: several merchants use SKU(s) {shared}; "
            "change or remove all but one of each first"
        )

    def alter(batch_op):
        batch_op.drop_constraint(PER_MERCHANT, type_="unique")
        batch_op.create_unique_constraint(GLOBAL, ["sku"])

    _alter_products(alter)


def _alter_products(alter) -> None:
    """Run `alter` on the products table; on SQLite around a copy of the table (see above)."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("products", schema=None) as batch_op:
            alter(batch_op)
        return
    bind = op.get_bind()
    triggers = (
        bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'products'")
        )
        .scalars()
        .all()
    )
    names = ", ".join(f'"{c["name"]}"' for c in sa.inspect(bind).get_columns("products"))
    op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    op.execute(f"CREATE TEMP TABLE products_0046 AS SELECT {names} FROM products")
    op.execute("DELETE FROM products")
    with op.batch_alter_table("products", schema=None) as batch_op:
        alter(batch_op)
    op.execute(f"INSERT INTO products ({names}) SELECT {names} FROM products_0046")
    op.execute("DROP TABLE products_0046")
    for trigger in triggers:
        op.execute(trigger)

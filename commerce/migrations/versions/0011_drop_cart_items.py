"""drop the saved cart: the API quotes and checks out the lines each request sends

Revision ID: 0011_drop_cart_items
Revises: 0003_order_import_ref
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_drop_cart_items"
down_revision: str | None = "0003_order_import_ref"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("cart_items")


def downgrade() -> None:
    op.create_table(
        "cart_items",
        sa.Column("shopper_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_items_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.product_id"], name=op.f("fk_cart_items_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["shopper_id"], ["shoppers.shopper_id"], name=op.f("fk_cart_items_shopper_id_shoppers")
        ),
        sa.PrimaryKeyConstraint("shopper_id", "product_id", name=op.f("pk_cart_items")),
    )

"""warehouses; order lines draw stock through allocations (a line may be split across warehouses)

Existing stock locations become warehouses of the mode of the goods they hold; each order line's one
stock row becomes its one allocation. Steps are ordered so that SQLite's table copies (batch mode) never
drop a table another table's foreign key still points at: the allocations table gets its foreign keys
last.

Revision ID: 0020a_warehouses
Revises: 0017_keyword_ads
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020a_warehouses"
down_revision: str | None = "0017_keyword_ads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODE = sa.Enum(
    "bonded", "direct_mail", name="warehouse_mode", native_enum=False, create_constraint=True, length=32
)


def upgrade() -> None:
    op.create_table(
        "warehouses",
        sa.Column("warehouse_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", MODE, nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["logistics_partners.partner_id"],
            name=op.f("fk_warehouses_partner_id_logistics_partners"),
        ),
        sa.PrimaryKeyConstraint("warehouse_id", name=op.f("pk_warehouses")),
    )
    # every location in use becomes a warehouse for the mode of the goods it holds
    op.execute(
        "INSERT INTO warehouses (warehouse_id, name, mode) "
        "SELECT s.location, s.location, MIN(p.fulfillment) FROM stock s "
        "JOIN products p ON p.product_id = s.product_id GROUP BY s.location"
    )
    op.create_table(
        "order_line_allocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_line_id", sa.Integer(), nullable=False),
        sa.Column("stock_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_line_allocations_quantity_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_line_allocations")),
        sa.UniqueConstraint(
            "order_line_id", "stock_id", name=op.f("uq_order_line_allocations_order_line_id_stock_id")
        ),
    )
    op.execute(
        "INSERT INTO order_line_allocations (order_line_id, stock_id, quantity) "
        "SELECT id, stock_id, quantity FROM order_lines"
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_order_lines_stock_id_stock"), type_="foreignkey")
        batch_op.drop_column("stock_id")
    with op.batch_alter_table("stock", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_stock_location_warehouses"), "warehouses", ["location"], ["warehouse_id"]
        )
    with op.batch_alter_table("order_line_allocations", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_order_line_allocations_order_line_id_order_lines"),
            "order_lines",
            ["order_line_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_order_line_allocations_stock_id_stock"), "stock", ["stock_id"], ["id"]
        )
        batch_op.create_index(
            batch_op.f("ix_order_line_allocations_order_line_id"), ["order_line_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_order_line_allocations_stock_id"), ["stock_id"], unique=False)


def downgrade() -> None:
    """Each line goes back to one stock row: the one most of its units came from."""
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stock_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE order_lines SET stock_id = (SELECT a.stock_id FROM order_line_allocations a "
        "WHERE a.order_line_id = order_lines.id ORDER BY a.quantity DESC, a.stock_id LIMIT 1)"
    )
    op.drop_table("order_line_allocations")
    # stock first, while no foreign key points at it (SQLite copies the table)
    with op.batch_alter_table("stock", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_stock_location_warehouses"), type_="foreignkey")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.alter_column("stock_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_order_lines_stock_id_stock"), "stock", ["stock_id"], ["id"]
        )
    op.drop_table("warehouses")

"""location owner: a merchant's own stock location is its own

A location a merchant named was registered with no owner, so any other merchant could stock its goods
there, learn from a refusal which goods it holds and then see it listed as its own. `warehouses`
gains `owner_merchant_id` (`commerce.logistics.usable_by`: no owner is a partner's or platform location
any merchant may use). Backfill: a location no partner runs whose stock rows are all one merchant's
products becomes that merchant's; one shared by several merchants or holding no stock stays without an
owner (an admin can assign one); the counts are logged as a warning. Downgrade drops the column.

Revision ID: 0039_location_owner
Revises: 0038_id_skeletons
Create Date: 2026-12-02 13:00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0039_location_owner"
down_revision: str | None = "0038_id_skeletons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
warehouses = sa.table(
    "warehouses", sa.column("warehouse_id"), sa.column("partner_id"), sa.column("owner_merchant_id")
)
stock = sa.table("stock", sa.column("product_id"), sa.column("location"))
products = sa.table("products", sa.column("product_id"), sa.column("merchant_id"))
FK = "fk_warehouses_owner_merchant_id_merchants"


def _merchants_stocking(aggregate):
    """`aggregate` over the merchants whose products have stock rows at the warehouse (scalar subquery)."""
    return (
        sa.select(aggregate)
        .select_from(stock.join(products, products.c.product_id == stock.c.product_id))
        .where(stock.c.location == warehouses.c.warehouse_id)
        .scalar_subquery()
    )


def upgrade() -> None:
    def add(batch_op):
        batch_op.add_column(sa.Column("owner_merchant_id", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(FK, "merchants", ["owner_merchant_id"], ["merchant_id"])

    _alter_warehouses(add)
    bind = op.get_bind()
    count = _merchants_stocking(sa.func.count(products.c.merchant_id.distinct()))
    own = warehouses.c.partner_id.is_(None)
    owned = bind.execute(
        warehouses.update()
        .where(own, count == 1)
        .values(owner_merchant_id=_merchants_stocking(sa.func.min(products.c.merchant_id)))
    ).rowcount
    tally = sa.select(sa.func.count()).select_from(warehouses).where(own)
    shared = bind.execute(tally.where(count > 1)).scalar_one()
    unstocked = bind.execute(tally.where(count == 0)).scalar_one()
    log.warning(
        "0039: %d merchant locations now belong to the one merchant stocking them; %d shared by several "
        "merchants and %d holding no stock stay platform locations (no owner) until an admin assigns one",
        owned,
        shared,
        unstocked,
    )


def downgrade() -> None:
    def drop(batch_op):
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.drop_column("owner_merchant_id")

    _alter_warehouses(drop)


def _alter_warehouses(alter) -> None:
    """Run `alter` on the warehouses table. SQLite copies the table, and dropping the old one would break
    every stock row's foreign key to its warehouse: SQLite counts those at the drop and never uncounts
    them, so the commit fails. As in 0027, the rows are set aside, the empty table is copied and they
    come back into the new one, under foreign keys deferred to the commit, when every reference holds
    again (none cascades)."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("warehouses", schema=None) as batch_op:
            alter(batch_op)
        return
    bind = op.get_bind()
    before = [c["name"] for c in sa.inspect(bind).get_columns("warehouses")]
    op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    op.execute(f"CREATE TEMP TABLE warehouses_0039 AS SELECT {_names(before)} FROM warehouses")
    op.execute("DELETE FROM warehouses")
    with op.batch_alter_table("warehouses", schema=None) as batch_op:
        alter(batch_op)
    after = {c["name"] for c in sa.inspect(bind).get_columns("warehouses")}
    kept = _names([c for c in before if c in after])
    op.execute(f"INSERT INTO warehouses ({kept}) SELECT {kept} FROM warehouses_0039")
    op.execute("DROP TABLE warehouses_0039")


def _names(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)

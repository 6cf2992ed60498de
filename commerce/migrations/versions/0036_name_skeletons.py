"""name skeletons: each name refused as a look-alike keeps its Unicode skeleton in an indexed column

A new coupon id, merchant name, brand, experiment or layer name is refused when its skeleton (UTS #39)
equals a stored other one's. That computed the skeleton of every stored value on each write: 197 ms per
coupon created at 100,000 coupons (bench/look_alikes.py). Each name now has `<column>_skeleton` beside it,
indexed (not unique: the same brand held by two merchants is one skeleton), so the check is one lookup.
Stored rows are backfilled in batches, the skeleton computed in Python (ICU; SQL has no UTS #39).

The column is added NOT NULL with an empty default, then filled: SQLite adds such a column in place,
while making a nullable one NOT NULL would copy each table, and dropping the old `experiments` runs its
ON DELETE CASCADE (variants, exposures). PostgreSQL then drops the default; SQLite keeps it unused (every
insert sets the column: `commerce.sqltypes.skeleton_of`). Downgrade drops the indexes and columns.

Revision ID: 0036_name_skeletons
Revises: 0035_licence_recompose
Create Date: 2026-12-01 07:10:00
"""

from collections.abc import Sequence

import icu
import sqlalchemy as sa
from alembic import op

revision: str = "0036_name_skeletons"
down_revision: str | None = "0035_licence_recompose"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: (primary key, name column)
NAMES = {
    "coupons": ("coupon_id", "coupon_id"),
    "merchants": ("merchant_id", "name"),
    "brand_authorizations": ("id", "brand"),
    "experiments": ("id", "name"),
    "experiment_layers": ("id", "name"),
}
BATCH = 2_000


def skeleton(text: str, _spoof=icu.SpoofChecker()) -> str:
    """`commerce.sqltypes.skeleton` as of this revision (copied: a migration is a snapshot)."""
    return _spoof.getSkeleton(0, text)


def _backfill(table: str, key: str, name: str) -> None:
    """Set `<name>_skeleton` of every row, `BATCH` rows at a time in primary key order."""
    rows = sa.table(table, sa.column(key), sa.column(name), sa.column(f"{name}_skeleton"))
    pk, source = rows.c[key], rows.c[name]
    write = rows.update().where(pk == sa.bindparam("k")).values({f"{name}_skeleton": sa.bindparam("s")})
    bind = op.get_bind()
    after = None
    while True:
        page = sa.select(pk, source).order_by(pk).limit(BATCH)
        batch = bind.execute(page if after is None else page.where(pk > after)).all()
        if not batch:
            return
        bind.execute(write, [{"k": k, "s": skeleton(v)} for k, v in batch])
        after = batch[-1][0]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, (key, name) in NAMES.items():
        column = f"{name}_skeleton"
        op.add_column(table, sa.Column(column, sa.Text(), nullable=False, server_default=""))
        _backfill(table, key, name)
        if postgresql:
            op.alter_column(table, column, server_default=None)
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    for table, (_, name) in NAMES.items():
        column = f"{name}_skeleton"
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
        op.drop_column(table, column)  # SQLite 3.35+ drops a column in place

"""location skeletons: a stock location's id keeps its Unicode skeleton, as other chosen ids do (0038)

A merchant names a new stock location, and its name became the location's id (`warehouses.warehouse_id`,
one namespace for every merchant). The word rule refused a mixed-script `НZ-1`, but `НН-1` spelt wholly
in Cyrillic passed beside `HH-1`: a second location that reads the same in every list, stock row and
shipment. A new location is now refused when its skeleton (UTS #39) equals a stored other one's
(`commerce.services._util.chosen_id`), one indexed lookup of `warehouse_id_skeleton`. As for ids (0038)
the index is not unique: locations stored before may already look alike, and the check keeps new ones
apart.

The column is added NOT NULL with an empty default, in place on SQLite (no copy of the table, whose
stock rows refer to it: 0039), and backfilled in batches (the skeleton computed in Python: SQL has no
UTS #39); PostgreSQL then drops the default, and on SQLite a trigger refuses an empty skeleton, as 0037
and 0038 do. Downgrade drops the trigger, index and column.

Revision ID: 0041_location_skeletons
Revises: 0040_live_licence
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import icu
import sqlalchemy as sa
from alembic import op

revision: str = "0041_location_skeletons"
down_revision: str | None = "0040_live_licence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE, KEY = "warehouses", "warehouse_id"
COLUMN = f"{KEY}_skeleton"
BATCH = 2_000


def skeleton(text: str, _spoof=icu.SpoofChecker()) -> str:
    """`commerce.sqltypes.skeleton` as of this revision (copied: a migration is a snapshot)."""
    return _spoof.getSkeleton(0, text)


def _backfill() -> None:
    """Set `warehouse_id_skeleton` of every row, `BATCH` rows at a time in id order."""
    rows = sa.table(TABLE, sa.column(KEY), sa.column(COLUMN))
    pk = rows.c[KEY]
    write = rows.update().where(pk == sa.bindparam("k")).values({COLUMN: sa.bindparam("s")})
    bind = op.get_bind()
    after = None
    while True:
        page = sa.select(pk).order_by(pk).limit(BATCH)
        batch = bind.execute(page if after is None else page.where(pk > after)).scalars().all()
        if not batch:
            return
        bind.execute(write, [{"k": k, "s": skeleton(k)} for k in batch])
        after = batch[-1]


def upgrade() -> None:
    op.add_column(TABLE, sa.Column(COLUMN, sa.Text(), nullable=False, server_default=""))
    _backfill()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(TABLE, COLUMN, server_default=None)
    else:
        op.execute(
            f"CREATE TRIGGER {TABLE}_{COLUMN}_required BEFORE INSERT ON {TABLE} "
            f"WHEN NEW.{COLUMN} = '' BEGIN SELECT RAISE(ABORT, "
            f"'NOT NULL constraint failed: {TABLE}.{COLUMN} (commerce.sqltypes.skeleton_of)'); END"
        )
    op.create_index(op.f(f"ix_{TABLE}_{COLUMN}"), TABLE, [COLUMN], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER {TABLE}_{COLUMN}_required")
    op.drop_index(op.f(f"ix_{TABLE}_{COLUMN}"), table_name=TABLE)
    op.drop_column(TABLE, COLUMN)  # SQLite 3.35+ drops a column in place

"""id skeletons: merchant, product, campaign, keyword campaign, category and shopper ids keep their
Unicode skeleton, as coupon ids do

A client may choose these ids. `p1`, `ｐ1` (full width), `p1 ` and a Cyrillic `р1` were four records
alike on screen; new ids are now stored in their normal form and refused when their skeleton (UTS #39)
equals a stored other id's (`commerce.services._util.chosen_id`), one indexed lookup of
`<id>_skeleton`. As for names (0036), the index is not unique: rows stored before may already share a
skeleton, and the check (serialized per column on PostgreSQL) keeps new ones apart.

Each column is added NOT NULL with an empty default and backfilled in batches (the skeleton computed in
Python: SQL has no UTS #39); PostgreSQL then drops the default, and on SQLite a trigger refuses an empty
skeleton, as 0037 does for names. Downgrade drops the triggers, indexes and columns.

Revision ID: 0038_id_skeletons
Revises: 0037_skeleton_required
Create Date: 2026-12-02 01:30:00
"""

from collections.abc import Sequence

import icu
import sqlalchemy as sa
from alembic import op

revision: str = "0038_id_skeletons"
down_revision: str | None = "0037_skeleton_required"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: its id (the primary key)
IDS = {
    "merchants": "merchant_id",
    "products": "product_id",
    "campaigns": "campaign_id",
    "keyword_campaigns": "campaign_id",
    "categories": "category_id",
    "shoppers": "shopper_id",
}
BATCH = 2_000


def skeleton(text: str, _spoof=icu.SpoofChecker()) -> str:
    """`commerce.sqltypes.skeleton` as of this revision (copied: a migration is a snapshot)."""
    return _spoof.getSkeleton(0, text)


def _backfill(table: str, key: str) -> None:
    """Set `<key>_skeleton` of every row, `BATCH` rows at a time in id order."""
    rows = sa.table(table, sa.column(key), sa.column(f"{key}_skeleton"))
    pk = rows.c[key]
    write = rows.update().where(pk == sa.bindparam("k")).values({f"{key}_skeleton": sa.bindparam("s")})
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
    dialect = op.get_bind().dialect.name
    for table, key in IDS.items():
        column = f"{key}_skeleton"
        op.add_column(table, sa.Column(column, sa.Text(), nullable=False, server_default=""))
        _backfill(table, key)
        if dialect == "postgresql":
            op.alter_column(table, column, server_default=None)
        else:
            op.execute(
                f"CREATE TRIGGER {table}_{column}_required BEFORE INSERT ON {table} "
                f"WHEN NEW.{column} = '' BEGIN SELECT RAISE(ABORT, "
                f"'NOT NULL constraint failed: {table}.{column} (commerce.sqltypes.skeleton_of)'); END"
            )
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, key in IDS.items():
        column = f"{key}_skeleton"
        if sqlite:
            op.execute(f"DROP TRIGGER {table}_{column}_required")
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
        op.drop_column(table, column)  # SQLite 3.35+ drops a column in place

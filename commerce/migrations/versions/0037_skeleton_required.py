"""skeleton required: no name is stored without its skeleton, on SQLite as on PostgreSQL

0036 left on SQLite the empty default its `<name>_skeleton` columns were added with (dropping it copies
the table), so a raw INSERT that names no skeleton stored '' there, and the look-alike check, which looks
the skeleton up, missed that row (PostgreSQL refuses it: NOT NULL, no default). Rows stored so since are
given their skeleton, and on SQLite a trigger per table refuses an empty one from now on, as
PostgreSQL does; `crosscart db renormalise --dry-run` lists any stored skeleton that is not the name's.
Downgrade drops the triggers.

Revision ID: 0037_skeleton_required
Revises: 0036_name_skeletons
Create Date: 2026-12-01 07:40:00
"""

from collections.abc import Sequence

import icu
import sqlalchemy as sa
from alembic import op

revision: str = "0037_skeleton_required"
down_revision: str | None = "0036_name_skeletons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: name column (as 0036)
NAMES = {
    "coupons": "coupon_id",
    "merchants": "name",
    "brand_authorizations": "brand",
    "experiments": "name",
    "experiment_layers": "name",
}


def skeleton(text: str, _spoof=icu.SpoofChecker()) -> str:
    """`commerce.sqltypes.skeleton` as of this revision (copied: a migration is a snapshot)."""
    return _spoof.getSkeleton(0, text)


def upgrade() -> None:
    bind = op.get_bind()
    for table, name in NAMES.items():
        column = f"{name}_skeleton"
        rows = sa.table(table, sa.column(name), sa.column(column))
        blank = bind.execute(sa.select(rows.c[name]).where(rows.c[column] == "").distinct()).scalars()
        write = rows.update().where(rows.c[name] == sa.bindparam("n")).values({column: sa.bindparam("s")})
        if params := [{"n": n, "s": skeleton(n)} for n in blank]:
            bind.execute(write, params)
        if bind.dialect.name == "sqlite":
            op.execute(
                f"CREATE TRIGGER {table}_{column}_required BEFORE INSERT ON {table} "
                f"WHEN NEW.{column} = '' BEGIN SELECT RAISE(ABORT, "
                f"'NOT NULL constraint failed: {table}.{column} (commerce.sqltypes.skeleton_of)'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, name in NAMES.items():
            op.execute(f"DROP TRIGGER {table}_{name}_skeleton_required")

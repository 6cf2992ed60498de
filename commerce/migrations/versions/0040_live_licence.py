"""live licence: a rejected merchant application holds no licence number

A licence number was unique over every merchant ever registered, rejected ones included. Applying needs
no key, so anyone could apply naming a rival's licence, and once an admin had rejected that application
the rival still could not apply (409 `duplicate_licence`), ever. The unique constraint on (country,
licence_no) becomes a unique index over the merchants that are not rejected (rejected is final:
`commerce.services.merchants.ACTIONS`), so a pending, approved or suspended merchant still holds its
licence. Downgrade restores the constraint, and fails while a licence is held by a rejected application
and a later one: reject or remove one of them first.

On SQLite, dropping the constraint copies the table. As 0039 does for warehouses, the rows are set aside
and come back into the new table under foreign keys deferred to the commit (every product, key and order
row refers to its merchant; none cascades), and the table's triggers (0037, 0038: skeletons required),
which the copy drops, are read before and created again after.

Revision ID: 0040_live_licence
Revises: 0039_location_owner
Create Date: 2026-12-02 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040_live_licence"
down_revision: str | None = "0039_location_owner"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "uq_merchants_country_licence_no"
INDEX = "uq_merchants_live_licence"
KEY = ["country", "licence_no"]
LIVE = sa.text("status <> 'rejected'")


def upgrade() -> None:
    _alter_merchants(lambda batch_op: batch_op.drop_constraint(CONSTRAINT, type_="unique"))
    op.create_index(INDEX, "merchants", KEY, unique=True, sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="merchants")
    _alter_merchants(lambda batch_op: batch_op.create_unique_constraint(CONSTRAINT, KEY))


def _alter_merchants(alter) -> None:
    """Run `alter` on the merchants table; on SQLite around a copy of the table (see above)."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("merchants", schema=None) as batch_op:
            alter(batch_op)
        return
    bind = op.get_bind()
    triggers = (
        bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'merchants'")
        )
        .scalars()
        .all()
    )
    names = ", ".join(f'"{c["name"]}"' for c in sa.inspect(bind).get_columns("merchants"))
    op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    op.execute(f"CREATE TEMP TABLE merchants_0040 AS SELECT {names} FROM merchants")
    op.execute("DELETE FROM merchants")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        alter(batch_op)
    op.execute(f"INSERT INTO merchants ({names}) SELECT {names} FROM merchants_0040")
    op.execute("DROP TABLE merchants_0040")
    for trigger in triggers:
        op.execute(trigger)

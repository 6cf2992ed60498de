"""campaign coupon grant check: the database refuses a campaign's coupon that needs no grant

0029 made every stored campaign coupon grant-only, and the service refuses creating or editing one
into an open one (`invalid_arm`), but the database took any row: a raw INSERT or UPDATE, an import
or a future code path could store one again, open to the holdout and other campaigns' shoppers
(redemption still treats it as grant-only, `commerce.services.coupons._usable_by`). This adds
`CHECK (campaign_id IS NULL OR requires_grant)` on coupons (`ck_coupons_campaign_grant_only`).
It fails on a row that breaks it, which 0029 left none of. Downgrade drops the check.

Revision ID: 0030_campaign_coupon_grant_check
Revises: 0029_campaign_coupons_grant_only
Create Date: 2026-11-30 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030_campaign_coupon_grant_check"
down_revision: str | None = "0029_campaign_coupons_grant_only"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_coupons_campaign_grant_only"


def upgrade() -> None:
    _alter_coupons(
        lambda batch_op: batch_op.create_check_constraint(
            batch_op.f(CHECK), "campaign_id IS NULL OR requires_grant"
        )
    )


def downgrade() -> None:
    _alter_coupons(lambda batch_op: batch_op.drop_constraint(batch_op.f(CHECK), type_="check"))


def _alter_coupons(alter) -> None:
    """Run `alter` on the coupons table, as 0027 does (a migration is a snapshot, so its helper is
    copied, not imported): SQLite copies the table, and dropping the old one would break every
    foreign key pointing at a coupon, so the rows are set aside, the empty table is copied and they
    come back into the new one under foreign keys deferred to the commit."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("coupons", schema=None) as batch_op:
            alter(batch_op)
        return
    columns = ", ".join(f'"{c["name"]}"' for c in sa.inspect(op.get_bind()).get_columns("coupons"))
    op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    op.execute(f"CREATE TEMP TABLE coupons_0030 AS SELECT {columns} FROM coupons")
    op.execute("DELETE FROM coupons")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        alter(batch_op)
    op.execute(f"INSERT INTO coupons ({columns}) SELECT {columns} FROM coupons_0030")
    op.execute("DROP TABLE coupons_0030")

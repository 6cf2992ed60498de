"""coupon campaign fk: a coupon names only a campaign that exists

`coupons.campaign_id` was a plain string, so a coupon could name a campaign that was never created:
it then drew on no campaign's budget, and a campaign created later under that id would have taken it
as one of its arms unplanned. Orphans (ids of no stored campaign) are set to NULL first, which keeps
how they behaved (no budget cap, no arm); their ids are logged (a warning with the count and the
first ten). Before this revision `crosscart db load` stored past campaigns' coupons ahead of the
campaigns, so a database loaded without past campaigns has such orphans: loading those campaigns
again links their coupons (commerce.history). Downgrade drops the key and leaves the ids as they are.

Revision ID: 0027_coupon_campaign_fk
Revises: 0026_campaign_spent_backfill
Create Date: 2026-11-30 18:00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_coupon_campaign_fk"
down_revision: str | None = "0026_campaign_spent_backfill"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
coupons = sa.table("coupons", sa.column("coupon_id"), sa.column("campaign_id"))
campaigns = sa.table("campaigns", sa.column("campaign_id"))
FK = "fk_coupons_campaign_id_campaigns"


def upgrade() -> None:
    orphan = sa.and_(
        coupons.c.campaign_id.is_not(None),
        ~sa.exists().where(campaigns.c.campaign_id == coupons.c.campaign_id),
    )
    bind = op.get_bind()
    found = bind.execute(
        sa.select(coupons.c.coupon_id, coupons.c.campaign_id).where(orphan).order_by(coupons.c.coupon_id)
    ).all()
    if found:
        log.warning(
            "0027: %d coupons named campaigns that do not exist; their campaign_id is now NULL: %s",
            len(found),
            ", ".join(f"{c} ({k})" for c, k in found[:10]),
        )
        op.execute(coupons.update().where(orphan).values(campaign_id=None))
    _alter_coupons(
        lambda batch_op: batch_op.create_foreign_key(FK, "campaigns", ["campaign_id"], ["campaign_id"])
    )


def downgrade() -> None:
    _alter_coupons(lambda batch_op: batch_op.drop_constraint(FK, type_="foreignkey"))


def _alter_coupons(alter) -> None:
    """Run `alter` on the coupons table. SQLite copies the table, and dropping the old one would break
    every foreign key pointing at a coupon (grants, usage, redemptions, orders, audiences): SQLite
    counts those at the drop and never uncounts them, so the commit fails. The rows are set aside,
    the empty table is copied and they come back into the new one, under foreign keys deferred to the
    commit, when every reference holds again (none cascades)."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("coupons", schema=None) as batch_op:
            alter(batch_op)
        return
    columns = ", ".join(f'"{c["name"]}"' for c in sa.inspect(op.get_bind()).get_columns("coupons"))
    op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    op.execute(f"CREATE TEMP TABLE coupons_0027 AS SELECT {columns} FROM coupons")
    op.execute("DELETE FROM coupons")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        alter(batch_op)
    op.execute(f"INSERT INTO coupons ({columns}) SELECT {columns} FROM coupons_0027")
    op.execute("DROP TABLE coupons_0027")

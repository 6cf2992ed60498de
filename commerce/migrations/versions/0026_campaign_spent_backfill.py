"""campaign spent backfill: what each campaign's redemptions took, held at its budget

0025 added `campaigns.spent` at 0 for every stored campaign, so a campaign's budget could pay out
again what its coupons had already given. This sets it as `crosscart db campaign-spend --repair`
does (`commerce.services.coupons.recount_campaign_spend`): the campaign's coupons' redemptions not
released, rounded to the fen; one whose redemptions took more than its budget gets its budget
(nothing more is spent; the CLI still reports it). The rule is written here again, not imported (a
migration must not change when the app does); tests/commerce/test_migration_campaign_spent.py
checks that the two agree.

Revision ID: 0026_campaign_spent_backfill
Revises: 0025_campaign_spent
Create Date: 2026-11-30 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_campaign_spent_backfill"
down_revision: str | None = "0025_campaign_spent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

campaigns = sa.table("campaigns", sa.column("campaign_id"), sa.column("budget"), sa.column("spent"))
coupons = sa.table("coupons", sa.column("coupon_id"), sa.column("campaign_id"))
redemptions = sa.table(
    "coupon_redemptions", sa.column("coupon_id"), sa.column("amount"), sa.column("released_at")
)


def upgrade() -> None:
    counted = (
        sa.select(sa.func.round(sa.func.coalesce(sa.func.sum(redemptions.c.amount), 0), 2))
        .select_from(redemptions.join(coupons, coupons.c.coupon_id == redemptions.c.coupon_id))
        .where(coupons.c.campaign_id == campaigns.c.campaign_id, redemptions.c.released_at.is_(None))
        .scalar_subquery()
    )
    op.execute(
        campaigns.update().values(
            spent=sa.case((counted > campaigns.c.budget, campaigns.c.budget), else_=counted)
        )
    )


def downgrade() -> None:
    # Data only: the counts stay (0025's downgrade drops the column).
    pass

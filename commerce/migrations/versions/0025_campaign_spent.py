"""campaign spent: the discounts a campaign's redemptions took, held within its budget (hard cap)

Revision ID: 0025_campaign_spent
Revises: 0024_member_arm_probabilities
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_campaign_spent"
down_revision: str | None = "0024_member_arm_probabilities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nothing was counted before: every campaign starts at 0 (past redemptions stay on their coupons).
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("spent", sa.Numeric(precision=12, scale=2), server_default="0", nullable=False)
        )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.alter_column("spent", server_default=None)
        batch_op.create_check_constraint(
            batch_op.f("ck_campaigns_spent_within_budget"), "spent >= 0 AND spent <= budget"
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_campaigns_spent_within_budget"), type_="check")
        batch_op.drop_column("spent")

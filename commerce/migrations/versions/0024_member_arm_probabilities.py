"""campaign member arm probabilities: the logged chance of each arm, for valuing later plans

Revision ID: 0024_member_arm_probabilities
Revises: 0023_identity_key_version
Create Date: 2026-11-30 08:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_member_arm_probabilities"
down_revision: str | None = "0023_identity_key_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Audiences stored so far logged no probabilities: NULL, and the policy value leaves them out.
    with op.batch_alter_table("campaign_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("arm_probabilities", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_members", schema=None) as batch_op:
        batch_op.drop_column("arm_probabilities")

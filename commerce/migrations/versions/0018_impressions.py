"""experiment impressions (interleaving teams, exploration propensities) and inference method

Revision ID: 0018_impressions
Revises: 0019_idempotency
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_impressions"
down_revision: str | None = "0019_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("inference", sa.String(length=32), nullable=False, server_default="fixed")
        )
    op.create_table(
        "experiment_impressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=128), nullable=False),
        sa.Column("page_id", sa.String(length=32), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("propensity", sa.Float(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_impressions_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_impressions")),
    )
    with op.batch_alter_table("experiment_impressions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_impressions_experiment_id"), ["experiment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_impressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_impressions_experiment_id"))
    op.drop_table("experiment_impressions")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("inference")

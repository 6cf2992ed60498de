"""impression once: a page's slot is stored once per experiment

The exposure writer retries a batch whose COMMIT failed; when the COMMIT was in fact kept (its
acknowledgement lost) the retry stored the pages again. Repeats already stored are removed (the first
row of each page slot stays) before the unique key is added.

Revision ID: 0028_impression_once
Revises: 0027_coupon_campaign_fk
Create Date: 2026-11-30 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_impression_once"
down_revision: str | None = "0027_coupon_campaign_fk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

impressions = sa.table(
    "experiment_impressions",
    sa.column("id"),
    sa.column("experiment_id"),
    sa.column("page_id"),
    sa.column("slot"),
)


def upgrade() -> None:
    first = sa.select(sa.func.min(impressions.c.id)).group_by(
        impressions.c.experiment_id, impressions.c.page_id, impressions.c.slot
    )
    op.execute(impressions.delete().where(impressions.c.id.not_in(first)))
    with op.batch_alter_table("experiment_impressions", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_experiment_impressions_experiment_id_page_id_slot"),
            ["experiment_id", "page_id", "slot"],
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_impressions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_experiment_impressions_experiment_id_page_id_slot"), type_="unique"
        )

"""ad impression client: an ad's impressions count once per viewer and day in its click rate

Every search that showed an ad counted an impression, so one viewer searching a rival's keyword in a
loop without clicking sank the rival's click rate (its rank is bid x click rate) and took its slot.
The click rate now counts an ad's impressions once per viewer and UTC day, as its clicks
(`commerce.services.ads.viewer_days`); `ad_impressions.client` names an anonymous search's viewer (its
client tag, as `ad_clicks.client` does since 0034). Impressions stored before have none: an anonymous
one counts alone, as before, and they leave the 30-day rate within 30 days.

Revision ID: 0042_ad_impression_client
Revises: 0041_location_skeletons
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0042_ad_impression_client"
down_revision: str | None = "0041_location_skeletons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ad_impressions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ad_impressions", schema=None) as batch_op:
        batch_op.drop_column("client")

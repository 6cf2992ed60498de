"""ad impression recent index: the ads refresh reads only the days that may still change

Each API replica keeps settled days' per-ad counts of the click rate's viewer-days between ads refreshes
(`commerce.services.ads.RollingViewerDays`) and counts again only yesterday, today and the window's
partial first day: a range of `shown_at`, which `ix_ad_impressions_viewer_days` (ad order) answers only by
reading all of it. This index holds the same columns, time first (`python -m bench.ads_refresh`).

Revision ID: 0044_ad_impression_recent_index
Revises: 0043_ad_impression_viewer_index
Create Date: 2026-12-03 17:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0044_ad_impression_recent_index"
down_revision: str | None = "0043_ad_impression_viewer_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["shown_at", "campaign_id", "product_id", "shopper_id", "client", "token_id"]


def upgrade() -> None:
    op.create_index("ix_ad_impressions_recent_days", "ad_impressions", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_ad_impressions_recent_days", table_name="ad_impressions")

"""ad click client: an anonymous client's repeat clicks on an ad in a day are not billed

A shopper was billed once per ad and UTC day, but an anonymous search's tokens named nobody, so one
client searching and clicking in a loop was billed for every click. `ad_clicks.client` holds the
anonymous search's client tag (a keyed hash of its address, `commerce.services.ads.client_tag`) that the
repeat check compares; clicks recorded before have none.

Revision ID: 0034_ad_click_client
Revises: 0033_console_sessions
Create Date: 2026-11-30 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_ad_click_client"
down_revision: str | None = "0033_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ad_clicks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ad_clicks", schema=None) as batch_op:
        batch_op.drop_column("client")

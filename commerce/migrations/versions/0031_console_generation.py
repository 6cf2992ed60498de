"""console generation: signing out of the console ends the session on the server

A console session cookie was signed and stateless: signing out deleted the browser's copy, but a copied
cookie stayed valid until it expired. `api_keys.console_generation` is the generation a session cookie
must carry; signing out increments it (serving/console/auth.py). Existing keys start at 0. Cookies
issued before the upgrade carry no generation and are refused: their holders sign in again.

Revision ID: 0031_console_generation
Revises: 0030_campaign_coupon_grant_check
Create Date: 2026-11-30 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_console_generation"
down_revision: str | None = "0030_campaign_coupon_grant_check"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("console_generation", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("console_generation")

"""identity key version: which key made each stored identity digest, so the key can rotate

Revision ID: 0023_identity_key_version
Revises: 0020a_warehouses
Create Date: 2026-11-30 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_identity_key_version"
down_revision: str | None = "0020a_warehouses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every digest stored so far was made with the one key there was: version 1.
    with op.batch_alter_table("shopper_identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("shopper_identities", schema=None) as batch_op:
        batch_op.drop_column("key_version")

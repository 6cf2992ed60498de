"""console sessions: signing out ends this browser's console session, not every session of the key

0031 made sign-out bump `api_keys.console_generation`, which every cookie of the key carried, so signing
out in one browser signed out every other browser using that key. A console session is now a row
(`console_sessions`, the SHA-256 of the id its cookie carries): signing out deletes that row only, an
admin ending a key's sessions (or revoking the key) deletes all of its rows, and expired rows are deleted
as sessions start. The generation column goes; cookies issued before the upgrade name no session row
and are refused: their holders sign in again.

Revision ID: 0033_console_sessions
Revises: 0032_licence_normal_form
Create Date: 2026-11-30 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033_console_sessions"
down_revision: str | None = "0032_licence_normal_form"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_console_sessions_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_key_id"), "console_sessions", ["key_id"], unique=False)
    op.create_index(op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"], unique=False)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("console_generation")


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("console_generation", sa.Integer(), server_default="0", nullable=False))
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_index(op.f("ix_console_sessions_key_id"), table_name="console_sessions")
    op.drop_table("console_sessions")

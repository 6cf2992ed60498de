"""licence normal form, composed again after upper case

0032's normal form (NFKC, upper case, dashes as `-`, white space runs as one) was not stable: upper-casing
`ΐ` (U+0390), `ΰ`, `ß` or `ı` before an accent, or a Greek letter with ypogegrammeni, gives letters that
NFKC composes, so normalising a stored number again changed it and the same number typed again did not
match it. The live rule now applies NFKC after upper case too. This rewrites each stored licence not in
the new form (what 0032 and the live code stored for such letters), except those 0032 flagged and left
as typed (status reason naming migration 0032) and those without a valid form. If another merchant of
that country already stores the new form, the row keeps its licence and is flagged for review as 0032
flags (status reason `review: ...`, a `merchant_status_changes` line), once. Downgrade changes nothing:
what was stored before is in the upgrade's log.

Revision ID: 0035_licence_recompose
Revises: 0034_ad_click_client
Create Date: 2026-12-01 03:10:00
"""

import logging
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0035_licence_recompose"
down_revision: str | None = "0034_ad_click_client"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
merchants = sa.table(
    "merchants",
    sa.column("merchant_id"),
    sa.column("country"),
    sa.column("licence_no"),
    sa.column("status"),
    sa.column("status_reason"),
)
changes = sa.table(
    "merchant_status_changes",
    sa.column("merchant_id"),
    sa.column("from_status"),
    sa.column("to_status"),
    sa.column("reason"),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)


def _dashes_and_spaces(text: str) -> str:
    text = "".join("-" if unicodedata.category(c) == "Pd" else c for c in text)
    return " ".join(text.split())


def normal_form(value: str) -> str:
    """`commerce.services._util.licence_number` as of this revision (copied: a migration is a snapshot)."""
    return _dashes_and_spaces(unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).upper()))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            merchants.c.merchant_id,
            merchants.c.country,
            merchants.c.licence_no,
            merchants.c.status,
            merchants.c.status_reason,
        ).order_by(merchants.c.merchant_id)
    ).all()
    taken = {(r.country, r.licence_no) for r in rows}
    updated, flagged = [], []
    now = datetime.now(UTC)
    for row in rows:
        stored = row.licence_no or ""
        normal = normal_form(stored)
        if (
            normal == stored
            or not normal
            or len(normal) > 64
            or "(migration 0032)" in (row.status_reason or "")
        ):
            continue  # stable, no valid form, or flagged by 0032 (left as typed for an admin)
        if (row.country, normal) not in taken:
            bind.execute(
                merchants.update().where(merchants.c.merchant_id == row.merchant_id).values(licence_no=normal)
            )
            taken.add((row.country, normal))
            updated.append(f"{row.merchant_id} {stored!r} -> {normal!r}")
            continue
        reason = (
            f"review: licence {stored!r} is {normal!r} in normal form, a licence another merchant of"
            f" {row.country} holds: possibly one business registered twice (migration 0035)"
        )
        before = f"; before: {row.status_reason}" if row.status_reason else ""
        if row.status_reason and row.status_reason.startswith(reason):
            continue  # an upgrade again after a downgrade: flagged once
        bind.execute(
            changes.insert().values(
                merchant_id=row.merchant_id,
                from_status=row.status,
                to_status=row.status,
                reason=reason,
                changed_at=now,
            )
        )
        bind.execute(
            merchants.update()
            .where(merchants.c.merchant_id == row.merchant_id)
            .values(status_reason=f"{reason}{before}")
        )
        flagged.append(f"{row.merchant_id}: {reason}")
    if updated:
        log.warning("0035: %d licence numbers recomposed: %s", len(updated), ", ".join(updated[:10]))
    if flagged:
        log.warning("0035: %d merchants flagged for review: %s", len(flagged), "; ".join(flagged[:10]))


def downgrade() -> None:
    """Nothing to undo: the schema is unchanged; what was stored before is in the upgrade's log."""

"""licence normal form: merchants stored before licence numbers were normalised get the normal form

Since session 7, applications and the import store a licence number in one form (NFKC, upper case, any
dash as `-`, runs of white space as one, trimmed) and uniqueness per country is checked on it. Rows stored
before keep what was typed: `lic-7` did not collide with a new application's `LIC-7`, so a licence already
registered could be registered again. This rewrites every stored licence number into the normal form.

Two stored merchants of one country whose licences have one normal form (`LIC-7` and `lic-7`) are
possibly one business registered twice: neither is merged nor deleted. The one already stored in the
normal form keeps it, else the oldest (created first, then by id) gets it; the others keep what they
store (the unique constraint on (country, licence_no) holds the normal form once) and are flagged for an
admin to decide: the status is unchanged, the status reason (shown by the API's merchant list and the
console's merchants page) says `review: ...` naming the other merchant, followed by the reason it had,
and the review log (`merchant_status_changes`) gets the `review: ...` line. Numbers whose normal form
would be empty or longer than 64 characters stay as they are and are flagged the same way. Every change
and flag is logged (a warning with counts and the first ten). Downgrade changes nothing: the previous
revision's code stores the normal form too, and what was typed before is in the upgrade's log.

Revision ID: 0032_licence_normal_form
Revises: 0031_console_generation
Create Date: 2026-11-30 23:30:00
"""

import logging
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0032_licence_normal_form"
down_revision: str | None = "0031_console_generation"
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
    sa.column("created_at"),
)
changes = sa.table(
    "merchant_status_changes",
    sa.column("merchant_id"),
    sa.column("from_status"),
    sa.column("to_status"),
    sa.column("reason"),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)
MAX_LEN = 64  # merchants.licence_no is String(64)


def normal_form(value: str) -> str:
    """`commerce.services._util.licence_number` as of this revision, copied (a migration is a snapshot:
    a later change of the live rule must not change what this revision did): NFKC, upper case, every
    dash (category Pd) as `-`, white space runs as one space, trimmed. The live function also refuses
    invisible characters; NFKC keeps them, so a stored one stays as it was."""
    text = unicodedata.normalize("NFKC", value or "").upper()
    text = "".join("-" if unicodedata.category(c) == "Pd" else c for c in text)
    return " ".join(text.split())


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            merchants.c.merchant_id,
            merchants.c.country,
            merchants.c.licence_no,
            merchants.c.status,
            merchants.c.status_reason,
            merchants.c.created_at,
        ).order_by(merchants.c.created_at, merchants.c.merchant_id)
    ).all()
    groups: dict[tuple[str, str], list] = defaultdict(list)
    flags: list[tuple] = []  # (row, reason)
    for row in rows:
        normal = normal_form(row.licence_no)
        if not normal or len(normal) > MAX_LEN:
            reason = f"licence {row.licence_no!r} has no valid normal form ({normal!r}) (migration 0032)"
            flags.append((row, reason))
        else:
            groups[(row.country, normal)].append(row)
    updated: list[tuple[str, str, str]] = []
    for (_country, normal), group in groups.items():
        # Oldest first (the query's order); one already in the normal form wins over it.
        keeper = next((r for r in group if r.licence_no == normal), group[0])
        if keeper.licence_no != normal:
            bind.execute(
                merchants.update()
                .where(merchants.c.merchant_id == keeper.merchant_id)
                .values(licence_no=normal)
            )
            updated.append((keeper.merchant_id, keeper.licence_no, normal))
        for other in group:
            if other is not keeper:
                flags.append(
                    (
                        other,
                        f"licence {other.licence_no!r} is {normal!r} in normal form, the licence of merchant"
                        f" {keeper.merchant_id!r}: possibly one business registered twice (migration 0032)",
                    )
                )
    if updated:
        log.warning(
            "0032: %d licence numbers rewritten into the normal form: %s",
            len(updated),
            ", ".join(f"{m} {old!r} -> {new!r}" for m, old, new in updated[:10]),
        )
    _flag(bind, flags)


def _flag(bind, flags: list[tuple]) -> None:
    """A review-log line for each (merchant row, reason), once: an upgrade again after a downgrade finds
    the same collisions."""
    if not flags:
        return
    logged = set(
        bind.execute(
            sa.select(changes.c.merchant_id, changes.c.reason).where(
                changes.c.merchant_id.in_([r.merchant_id for r, _ in flags])
            )
        ).all()
    )
    flags = [(r, reason) for r, reason in flags if (r.merchant_id, f"review: {reason}") not in logged]
    if flags:
        now = datetime.now(UTC)  # SQLite keeps it as naive UTC text, as the ORM's UTCDateTime does
        bind.execute(
            changes.insert(),
            [
                {
                    "merchant_id": r.merchant_id,
                    "from_status": r.status,
                    "to_status": r.status,
                    "reason": f"review: {reason}",
                    "changed_at": now,
                }
                for r, reason in flags
            ],
        )
        for r, reason in flags:
            before = f"; before: {r.status_reason}" if r.status_reason else ""
            bind.execute(
                merchants.update()
                .where(merchants.c.merchant_id == r.merchant_id)
                .values(status_reason=f"review: {reason}{before}")
            )
        log.warning(
            "0032: %d merchants flagged for review in their log, licence left as stored: %s",
            len(flags),
            "; ".join(f"{r.merchant_id}: {reason}" for r, reason in flags[:10]),
        )


def downgrade() -> None:
    """Nothing to undo: the schema is unchanged and the normal form is what the previous revision's code
    stores too; the flags stay in the review logs (they record what an admin has to look at)."""

"""campaign coupons grant only: every coupon of a campaign needs a grant

Before the service refused it, a campaign's coupon could be stored without `requires_grant`: anyone
could then use it, the campaign's holdout and other campaigns' shoppers too (the budget cap held; the
one-live-coupon rule and the holdout did not). Every such coupon is made grant-only; their ids are
logged (a warning with the count and the first ten). Redemption treats a campaign's coupon as
grant-only whatever the flag says (`commerce.services.coupons._usable_by`), so this makes the stored
flag, what the API and exports show, say what is enforced. Downgrade leaves the coupons grant-only:
which were open is in the upgrade's log, and reopening them would hand the holdout their coupons again.

Revision ID: 0029_campaign_coupons_grant_only
Revises: 0028_impression_once
Create Date: 2026-11-30 20:40:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_campaign_coupons_grant_only"
down_revision: str | None = "0028_impression_once"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
coupons = sa.table(
    "coupons", sa.column("coupon_id"), sa.column("campaign_id"), sa.column("requires_grant", sa.Boolean)
)


def upgrade() -> None:
    open_arm = sa.and_(coupons.c.campaign_id.is_not(None), coupons.c.requires_grant.is_(False))
    stmt = sa.select(coupons.c.coupon_id, coupons.c.campaign_id).where(open_arm)
    found = op.get_bind().execute(stmt.order_by(coupons.c.coupon_id)).all()
    if found:
        log.warning(
            "0029: %d coupons of campaigns needed no grant (anyone could use them); now grant-only: %s",
            len(found),
            ", ".join(f"{c} ({k})" for c, k in found[:10]),
        )
        op.execute(coupons.update().where(open_arm).values(requires_grant=True))


def downgrade() -> None:
    """Nothing to undo: the schema is unchanged, and the coupons stay grant-only (see above)."""

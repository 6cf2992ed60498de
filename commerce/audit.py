"""The audit log: one append-only row per privileged action (who, what, on which object, when).

Actions: key created or revoked, merchant reviewed, price changed, self-operated terms set, category
commission changed, a location's owner or a merchant's shipping rule set, refund requested / completed /
rejected, an order refunded or moved by an admin (payment confirmed, shipped, a tracking scan, a
status), campaign created, planned, scheduled, launched or completed, coupon created, changed or
retired, experiment created, started or stopped, a served model's alias moved (promotion, rollback),
keyword campaign created or changed, keyword added or changed. Rows are only ever inserted: database
triggers refuse UPDATE and DELETE on both SQLite and PostgreSQL, so not even a bug in this code base can
rewrite history.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DDL, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from commerce.db import Base
from commerce.sqltypes import UTCDateTime

AUDIT_ACTIONS = (
    "api_key.created",
    "api_key.revoked",
    "api_key.console_sessions_ended",
    "merchant.reviewed",
    "product.price_changed",
    "product.self_operated",
    "category.commission_changed",
    "location.owner_changed",
    "shipping_rule.set",
    "refund.requested",
    "refund.completed",
    "refund.rejected",
    "order.refunded",
    "order.payment_confirmed",
    "order.shipped",
    "order.tracking_added",
    "order.status_changed",
    "campaign.created",
    "campaign.planned",
    "campaign.scheduled",
    "campaign.launched",
    "campaign.completed",
    "coupon.created",
    "coupon.changed",
    "coupon.retired",
    "experiment.created",
    "experiment.started",
    "experiment.stopped",
    "model.alias_moved",
    "keyword_campaign.created",
    "keyword_campaign.changed",
    "keyword.added",
    "keyword.changed",
)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_role: Mapped[str] = mapped_column(String(20))
    #: The API key that acted (None for the command line, whose operator holds the database itself).
    actor_key_id: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(40), index=True)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text, default=None)  # JSON


# Append-only, enforced by the database (the migration creates the same triggers).
APPEND_ONLY_DDL = {
    "sqlite": [
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    ],
}
for _dialect, _statements in APPEND_ONLY_DDL.items():
    for _sql in _statements:
        event.listen(AuditEntry.__table__, "after_create", DDL(_sql).execute_if(dialect=_dialect))

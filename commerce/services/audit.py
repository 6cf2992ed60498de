"""Writing and reading the audit log (commerce.audit). Entries are written in the acting transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commerce.audit import AUDIT_ACTIONS, AuditEntry
from commerce.services._util import stored_form
from commerce.services.pagination import Page, paginate
from commerce.sqltypes import utcnow


def record(
    session: Session,
    action: str,
    target_type: str,
    target_id: str | int,
    *,
    actor_role: str,
    actor_key_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction, so the entry exists exactly when the action does."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    entry = AuditEntry(
        at=at or utcnow(),
        actor_role=actor_role,
        actor_key_id=actor_key_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=None if detail is None else json.dumps(detail, default=str, sort_keys=True),
    )
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    *,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[AuditEntry]:
    """Newest first. `target_id` is read as a chosen id in a URL is (`stored_form`), against the log
    itself since a target may be any kind of row: `ｐ01` and `p01 ` find product p01's entries."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if target_type is not None:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id is not None:
        stmt = stmt.where(AuditEntry.target_id == stored_form(target_id, lambda t: _names(session, t)))
    return paginate(session, stmt, limit=limit, offset=offset)


def _names(session: Session, target_id: str) -> bool:
    """Whether an entry's target is `target_id`."""
    return session.scalar(select(AuditEntry.id).where(AuditEntry.target_id == target_id).limit(1)) is not None

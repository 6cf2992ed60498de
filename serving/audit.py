"""Audit entries written by the API: the acting key is the principal of the request."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from commerce.services.audit import record
from serving.security import Principal


def audit(
    session: Session, principal: Principal, action: str, target_type: str, target_id: str | int, **detail: Any
) -> None:
    """Append an audit entry in the request's transaction (it exists exactly when the action commits)."""
    record(
        session,
        action,
        target_type,
        target_id,
        actor_role=principal.role,
        actor_key_id=principal.key_id,
        detail=detail or None,
    )

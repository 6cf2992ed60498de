"""Audit entries the command line writes: the actor is the operator at the shell (no API key), and the
detail says the action came `via` the CLI. The API audits the same actions as the key's principal."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

OPERATOR = "operator"


def operator_audit(
    session: Session, action: str, target_type: str, target_id: str | int, **detail: Any
) -> None:
    """Append an entry in the command's transaction, so it exists exactly when the action commits."""
    from commerce.services.audit import record

    record(session, action, target_type, target_id, actor_role=OPERATOR, detail={**detail, "via": "cli"})

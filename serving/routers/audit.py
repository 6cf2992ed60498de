"""The audit log (admin only): who did which privileged action, when. Read-only: entries are append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator

from commerce.audit import AUDIT_ACTIONS
from commerce.services.audit import list_entries
from serving.deps import Admin, SessionDep
from serving.routers.common import PageLimit, PageOffset
from serving.schemas.base import PageOut

router = APIRouter(prefix="/audit-log", tags=["access"])


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_role: str
    actor_key_id: int | None = Field(description="The API key that acted; null from the command line.")
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any] | None

    @field_validator("detail", mode="before")
    @classmethod
    def _json(cls, value):
        import json

        return json.loads(value) if isinstance(value, str) else value


@router.get("", response_model=PageOut[AuditEntryOut])
def read_audit_log(
    session: SessionDep,
    _: Admin,
    action: Annotated[str | None, Query(description=f"One of {', '.join(AUDIT_ACTIONS)}.")] = None,
    target_type: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[AuditEntryOut]:
    """Newest first."""
    page = list_entries(
        session, action=action, target_type=target_type, target_id=target_id, limit=limit, offset=offset
    )
    return PageOut(
        items=[AuditEntryOut.model_validate(e, from_attributes=True) for e in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )

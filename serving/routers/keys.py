"""API keys (admin only): create, list, revoke, end a key's console sessions."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, HTTPException, status

from commerce.access import ApiKey
from commerce.services.access import create_api_key, end_console_sessions, list_api_keys, revoke_api_key
from serving.audit import audit
from serving.deps import Admin, SessionDep, StateDep, after_commit
from serving.routers.common import IntId, PageLimit, PageOffset
from serving.schemas.access import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ConsoleSessionsEnded, Role
from serving.schemas.base import PageOut

router = APIRouter(prefix="/api-keys", tags=["access"])


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, session: SessionDep, admin: Admin) -> ApiKeyCreated:
    """A new key bound to an existing shopper (role shopper) or merchant (role merchant)."""
    try:
        key, plaintext = create_api_key(
            session, body.role, name=body.name, shopper_id=body.shopper_id, merchant_id=body.merchant_id
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    audit(
        session,
        admin,
        "api_key.created",
        "api_key",
        key.id,
        role=key.role,
        shopper_id=key.shopper_id,
        merchant_id=key.merchant_id,
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(key, from_attributes=True).model_dump(), key=plaintext)


@router.get("", response_model=PageOut[ApiKeyOut])
def list_keys(
    session: SessionDep,
    _: Admin,
    role: Role | None = None,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> PageOut[ApiKeyOut]:
    """Oldest first; revoked keys included (with `revoked_at`)."""
    page = list_api_keys(session, role=role, limit=limit, offset=offset)
    items = [ApiKeyOut.model_validate(k, from_attributes=True) for k in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.delete("/{key_id}", response_model=ApiKeyOut)
def revoke_key(
    key_id: IntId, session: SessionDep, state: StateDep, admin: Admin, background: BackgroundTasks
) -> ApiKeyOut:
    """Revoke now in the database; this replica forgets the key once the revocation has committed (forgot
    before, a request with the key in between read it live and cached it for 30 s) and, with Redis, every
    other replica as soon as the commit is broadcast (within `auth_poll_seconds` while Redis is down;
    within 30 s for replicas without Redis). An admin cannot revoke the key it is calling with, so the
    last admin key cannot lock everyone out."""
    if key_id == admin.key_id:
        raise HTTPException(status.HTTP_409_CONFLICT, "cannot revoke the key making this request")
    key = revoke_api_key(session, key_id)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    audit(session, admin, "api_key.revoked", "api_key", key_id, role=key.role)
    _forget_after_commit(session, state, background, key.key_hash)
    return ApiKeyOut.model_validate(key, from_attributes=True)


def _forget_after_commit(session, state, background: BackgroundTasks, key_hash: str) -> None:
    """Once committed, this replica's key cache (and the console sessions' memory following it) forgets
    the key, and every other replica's with Redis."""
    after_commit(session, lambda: state.principals.discard(key_hash))
    if state.revocations is not None:  # after the commit (the session closes before background tasks)
        background.add_task(state.revocations.publish, key_hash)


@router.delete("/{key_id}/console-sessions", response_model=ConsoleSessionsEnded)
def end_key_console_sessions(
    key_id: IntId, session: SessionDep, state: StateDep, admin: Admin, background: BackgroundTasks
) -> ConsoleSessionsEnded:
    """Sign the key out of the console in every browser ("sign out everywhere"), on every replica: the
    session rows go, so their cookies are refused, and every replica's memory of them (served through a
    database outage) is dropped as a revocation's is, the key's cached answer with it (asked again once).
    The key itself keeps working; its holder signs in again. (Signing out in the console ends that
    browser's session only.)"""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    ended = end_console_sessions(session, key_id)
    audit(session, admin, "api_key.console_sessions_ended", "api_key", key_id, ended=ended)
    _forget_after_commit(session, state, background, key.key_hash)
    return ConsoleSessionsEnded(key_id=key_id, ended=ended)

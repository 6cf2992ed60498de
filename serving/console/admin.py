"""Admin pages: the merchant review queue (approve, reject with a reason) and API keys (create, shown
once; revoke; sign out of the console everywhere), through `serving.routers.catalog` and
`serving.routers.keys`."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool

from commerce.access import ROLES
from commerce.services.merchants import recently_reviewed
from serving.console.auth import AdminOnly
from serving.console.web import FormRoute, attempt, choices, past_the_end, redirect, render
from serving.deps import MerchantId, SessionDep, StateDep
from serving.routers import catalog as catalog_api
from serving.routers import keys as keys_api
from serving.routers.common import MAX_N, IntId, PageOffset
from serving.schemas.access import ApiKeyCreate
from serving.schemas.catalog import MerchantReview

choices("roles", ROLES)

router = APIRouter(route_class=FormRoute)
RECENT = 20  # decisions listed under the review queue


async def _queue(request: Request, session, principal, status_code: int = 200, **extra):
    pending = await run_in_threadpool(catalog_api.list_merchants, session, principal, "pending", 100, 0)
    recent = await run_in_threadpool(recently_reviewed, session, RECENT)
    return await render(
        request, "merchants.html", status_code=status_code, title="Merchant review", pending=pending,
        recent=recent, **extra,
    )  # fmt: skip


@router.get("/merchants")
async def merchant_queue(request: Request, session: SessionDep, principal: AdminOnly):
    return await _queue(request, session, principal)


@router.post("/merchants/{merchant_id}/review")
async def review(
    request: Request,
    merchant_id: MerchantId,
    session: SessionDep,
    state: StateDep,
    principal: AdminOnly,
    background: BackgroundTasks,
    decision: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
):
    """approve or reject (a reason is required to reject), as `POST /v1/merchants/{id}/review`."""

    def run():
        body = MerchantReview(decision=decision, reason=reason.strip() or None)
        return catalog_api.review(merchant_id, body, session, state, principal, request, background)

    _, error = await attempt(request, session, run)
    if error:
        return await _queue(
            request, session, principal, status_code=error.status_code, error=error, failed=merchant_id,
            reason=reason,
        )  # fmt: skip
    return redirect("/console/merchants")


async def _keys(request: Request, session, principal, status_code: int = 200, offset: int = 0, **extra):
    page = await run_in_threadpool(keys_api.list_keys, session, principal, None, MAX_N, offset)
    if moved := past_the_end(request, page):
        return moved
    return await render(request, "keys.html", status_code=status_code, title="API keys", page=page, **extra)


@router.get("/keys")
async def key_list(request: Request, session: SessionDep, principal: AdminOnly, offset: PageOffset = 0):
    return await _keys(request, session, principal, offset=offset)


@router.post("/keys")
async def create_key(request: Request, session: SessionDep, principal: AdminOnly):
    """The new key is shown on this response only (never stored in plaintext, never shown again)."""
    form = await request.form()

    def run():
        body = ApiKeyCreate(
            role=form.get("role") or "",
            name=form.get("name") or "",
            shopper_id=form.get("shopper_id") or None,
            merchant_id=form.get("merchant_id") or None,
        )
        return keys_api.create_key(body, session, principal)

    created, error = await attempt(request, session, run)
    if error:
        return await _keys(
            request, session, principal, status_code=error.status_code, error=error, key_form=form
        )
    await run_in_threadpool(session.commit)
    return await _keys(request, session, principal, status_code=201, created=created)  # no-store: caching.py


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    request: Request,
    key_id: IntId,
    session: SessionDep,
    state: StateDep,
    principal: AdminOnly,
    background: BackgroundTasks,
):
    """Through the API's revoke: its background task tells the other replicas (with Redis)."""
    revoke = partial(keys_api.revoke_key, key_id, session, state, principal, background)
    return await _key_action(request, session, principal, revoke)


@router.post("/keys/{key_id}/sign-out")
async def end_key_sessions(
    request: Request,
    key_id: IntId,
    session: SessionDep,
    state: StateDep,
    principal: AdminOnly,
    background: BackgroundTasks,
):
    """Every console session of the key, as `DELETE /v1/api-keys/{id}/console-sessions`."""
    end = partial(keys_api.end_key_console_sessions, key_id, session, state, principal, background)
    return await _key_action(request, session, principal, end)


async def _key_action(request: Request, session, principal, action):
    """A key's button (revoke, sign out everywhere): the keys page again, with the refusal if any."""
    _, error = await attempt(request, session, action)
    if error:
        return await _keys(request, session, principal, status_code=error.status_code, error=error)
    return redirect("/console/keys")

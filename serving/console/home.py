"""Sign in, sign out and the start page."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool

from commerce.services.access import hash_key
from serving.console.auth import SessionCookie, SignedIn, forget, sign_in, sign_out
from serving.console.web import nav_for, redirect, render
from serving.deps import StateDep, request_client
from serving.security import ANONYMOUS, Principal

router = APIRouter()


def _safe_next(path: str | None) -> str:
    """Only console paths: a sign-in link must not bounce the browser to another site."""
    return path if path and path.startswith("/console") and not path.startswith("//") else "/console"


@router.get("")
async def start(request: Request, principal: SignedIn, session: SessionCookie):
    return await render(request, "home.html", title="Console", areas=nav_for(session), principal=principal)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None):
    return await render(request, "sign_in.html", title="Sign in", next=_safe_next(next))


@router.post("/sign-in")
async def sign_in_submit(
    request: Request,
    state: StateDep,
    session: SessionCookie,
    api_key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form()] = "/console",
):
    """Check the key as the API does (and count the attempt against the anonymous rate limit); the
    browser's previous session, if any, ends (`sign_in`). An unknown key counts as the API's failed key
    checks do (`state.auth_failures`, the same count): an address over that limit, refused any key it
    had not used before by the API, went on trying keys here at the anonymous rate."""
    client = request_client(request)
    decision = await state.limiter.check(Principal(role=ANONYMOUS, client=client))
    allowed = (decision is None or decision.allowed) and not state.auth_failures.retry_after(client)
    sessions = request.app.state.console_sessions
    found = (
        await run_in_threadpool(sign_in, state, api_key, sessions.lifetime, session.session_id)
        if allowed
        else None
    )
    if found is not None:  # replaced, or past the key's cap: no longer served from memory
        replaced = [] if session.session_id is None else [hash_key(session.session_id)]
        await forget(state, *replaced, *found[2])
    if found is None:
        if allowed:
            state.auth_failures.failed(client)
        error = "Unknown or revoked API key." if allowed else "Too many attempts; wait a minute."
        return await render(request, "sign_in.html", status_code=401, title="Sign in", error=error, next=next)
    response = redirect(_safe_next(next))  # a new CSRF token with the new privilege
    _, session_id, _ = found
    sessions.write(request, response, session_id, secrets.token_urlsafe(24))
    return response


@router.post("/sign-out")
async def sign_out_submit(request: Request, state: StateDep, session: SessionCookie):
    """Delete the cookie and end this browser's session on the server: a copy of the cookie is refused;
    the key's sessions in other browsers go on."""
    sessions = request.app.state.console_sessions
    if session.session_id is not None:
        try:
            await run_in_threadpool(sign_out, state, session.session_id)
        finally:  # after the commit, so a read in flight is not kept; refused, not served from memory
            await forget(state, hash_key(session.session_id))
    response = redirect("/console/sign-in")
    sessions.clear(request, response)
    return response

"""Console sign-in: an API key is exchanged for a signed session cookie; every form carries a CSRF token.

The cookie (HttpOnly, SameSite=Lax, Secure when `console_secure_cookie` or the request came over HTTPS)
holds only a console session id, a CSRF token and the issue time, signed with `console_secret`; never the
key itself. Each request reads the session's row joined to its key's (one query, as the key row alone
was before), so a revoked key signs its sessions out at once, and signing out deletes this browser's
row: a copied cookie is refused on every replica while the key's other browsers stay signed in. (Through
a database outage a session is served from memory: see `_principal_seen`.) Roles
are checked against `serving.deps.CAPABILITIES`, the rule set the API's dependencies use.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as DatabaseTimeout

from commerce.access import ApiKey
from commerce.db import read_only, transaction
from commerce.services.access import (
    authenticate,
    console_session_key,
    end_console_session,
    start_console_session,
)
from commerce.sqltypes import utcnow
from serving.deps import CAPABILITIES, StateDep, check_role
from serving.resilience import is_contention, is_outage
from serving.security import ANONYMOUS, Principal, PrincipalCache
from serving.state import ServingState

COOKIE = "crosscart_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """No valid session: the console redirects to the sign-in page."""


class TooManyRequests(Exception):
    """The signed-in key is over its rate limit (the API's quota, shared): the 429 page."""

    def __init__(self, decision) -> None:
        super().__init__("rate limit exceeded")
        self.decision = decision


class Forbidden(Exception):
    """The signed-in role may not do this, or a form came without its CSRF token: the 403 page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConsoleSession:
    """The cookie's content: the principal and session id when signed in, and this browser's CSRF token."""

    csrf: str
    principal: Principal | None = None
    session_id: str | None = None

    def may(self, capability: str) -> bool:
        return self.principal is not None and self.principal.role in CAPABILITIES[capability]


class Sessions:
    """Signs and reads console cookies for one app."""

    def __init__(self, secret: str, *, secure: bool, max_age_seconds: int, stale_seconds: float) -> None:
        self._signer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(32), salt="crosscart-console")
        self.secure, self.max_age = secure, max_age_seconds
        # session id -> the principal the database last confirmed (`_principal_seen`), tagged with its
        # key's hash: never read while the database answers, every request asks it; it follows the API's
        # key cache (`serving.console.install`), so a revoked key's sessions and an ended one leave it
        self.seen = PrincipalCache(ttl=0, stale_seconds=stale_seconds)

    def read(self, request: Request) -> dict | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            return self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:  # tampered, expired or signed by another secret
            return None

    def _secure(self, request: Request) -> bool:
        """Secure when configured, and whenever the request came over HTTPS (a trusted proxy's
        X-Forwarded-Proto counts): a deployment behind TLS that left the setting off sent the cookie
        over plain HTTP too, to anyone who got the browser to load an http:// console URL."""
        return self.secure or request.url.scheme == "https"

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.max_age)

    def write(self, request: Request, response: Response, session_id: str | None, csrf: str) -> None:
        response.set_cookie(
            COOKIE,
            self._signer.dumps({"s": session_id, "c": csrf}),
            max_age=self.max_age,
            path="/console",
            httponly=True,
            samesite="lax",
            secure=self._secure(request),
        )

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/console", httponly=True, samesite="lax", secure=self._secure(request)
        )


def _principal(key: ApiKey) -> Principal:
    return Principal(role=key.role, key_id=key.id, shopper_id=key.shopper_id, merchant_id=key.merchant_id)


def _principal_for(state: ServingState, session_id: str) -> tuple[Principal, str] | None:
    """The key's principal and hash while the session has not ended or expired and the key is live."""
    with read_only(state.session_factory) as session:
        key = console_session_key(session, session_id, utcnow())
        return None if key is None else (_principal(key), key.key_hash)


async def _principal_seen(state: ServingState, sessions: Sessions, session_id: str) -> Principal | None:
    """`_principal_for`; while the database cannot answer (down or busy), the principal it confirmed for
    this session within `stale_seconds`, the rule the API's keys follow (`auth_cache_stale_seconds`,
    `serving.deps`). Its pages are the database's 503 all the same, but a form sent now comes back with
    what was typed (`serving.console.web.FormRoute`); it was the error page, as the session could not be
    read. A session ended while the database answered (signed out or replaced, its key revoked or
    signed out everywhere), on this replica or, through the revocation feed, on another, is not served
    so; without Redis, one ended on another replica is, unless this one read it after."""
    asked = time.monotonic()
    try:
        found = await run_in_threadpool(_principal_for, state, session_id)
    except (DBAPIError, DatabaseTimeout) as exc:
        busy = is_contention(exc)
        stale = sessions.seen.stale(session_id) if busy or is_outage(exc) else None
        if stale is None:
            raise
        if not busy:
            state.db_health.failed(exc)
        return stale
    principal, key_hash = found or (None, None)
    sessions.seen.put(session_id, principal, asked_at=asked, key_hash=key_hash)  # not if ended meanwhile
    return principal


async def forget(state: ServingState, *digests: str) -> None:
    """After sessions ended in the database (their ids' hashes, `hash_key`): every replica's memory drops
    them (this one's through the API's key cache it follows, the others' through the revocation feed, as
    a revoked key's hash is)."""
    for digest in digests:
        state.principals.discard(digest)
        if state.revocations is not None:
            await state.revocations.publish(digest)


def sign_in(
    state: ServingState, plaintext: str, lifetime: timedelta, replacing: str | None = None
) -> tuple[Principal, str, list[str]] | None:
    """The key's principal (the API's `authenticate`), a new console session's id and the hashes of the
    key's sessions it ended past `CONSOLE_SESSIONS_PER_KEY`, or None for an unknown or revoked key. The
    browser's session being `replacing` ends, as signing out would end it: its cookie is overwritten, and
    a copy of it would otherwise stay valid for the rest of its hours (the caller then `forget`s it, and
    the ended ones: a session still in memory would otherwise pass through an outage)."""
    with transaction(state.session_factory) as session:
        key = authenticate(session, plaintext.strip())
        if key is None:
            return None
        if replacing is not None:
            end_console_session(session, replacing)
        return _principal(key), *start_console_session(session, key.id, lifetime, utcnow())


def sign_out(state: ServingState, session_id: str) -> None:
    """End this browser's console session (`end_console_session`); the key's other sessions stay."""
    with transaction(state.session_factory) as session:
        end_console_session(session, session_id)


async def console_session(request: Request, state: StateDep) -> ConsoleSession:
    """The browser's session; a fresh anonymous one (new CSRF token) when there is none. A signed-in
    request is counted against its key's rate limit, once (the session is kept for the request)."""
    cached = getattr(request.state, "console_session", None)
    if cached is not None:
        return cached
    sessions: Sessions = request.app.state.console_sessions
    data = sessions.read(request)
    if data is None:
        found = ConsoleSession(csrf=secrets.token_urlsafe(24))
        request.state.console_new_cookie = True
    else:
        principal, session_id = None, data.get("s")
        if isinstance(session_id, str):
            principal = await _principal_seen(state, sessions, session_id)
        found = ConsoleSession(csrf=data["c"], principal=principal, session_id=session_id)
    request.state.console_session = found
    if found.principal is not None:  # a page costs what an API call does: it counts against the key
        decision = await state.limiter.check(found.principal)
        if decision is not None and not decision.allowed:
            raise TooManyRequests(decision)
    return found


SessionCookie = Annotated[ConsoleSession, Depends(console_session)]


async def verify_csrf(request: Request, session: SessionCookie) -> None:
    """Every state-changing request must echo the session's CSRF token (form field or htmx header). Its
    form holds text fields only, a file part refused (422) as FastAPI refuses one sent for a declared
    form field: the forms read whole (`request.form()`: a new product, a keyword campaign, an experiment,
    a coupon) took it where text was expected, a 500 (5 of the console's forms)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise Forbidden("This form came without its security token (CSRF). Reload the page and try again.")
    if files := [name for name, value in form.multi_items() if not isinstance(value, str)]:
        msg = "Input should be a valid string"
        raise RequestValidationError([{"type": "string_type", "loc": ("body", f), "msg": msg} for f in files])
    request.state.csrf_checked = True  # only such a form is drawn again from what it sent (FormRoute)


def need(capability: str):
    """A dependency: the signed-in principal if its role has `capability` (API rule set), else 403."""

    async def check(session: SessionCookie) -> Principal:
        if session.principal is None or session.principal.role == ANONYMOUS:
            raise SignInRequired()
        try:
            return check_role(session.principal, CAPABILITIES[capability])
        except HTTPException as exc:
            raise Forbidden(
                f"Your role ({session.principal.role}) may not use this page: {exc.detail}."
            ) from exc

    return check


async def signed_in(session: SessionCookie) -> Principal:
    if session.principal is None:
        raise SignInRequired()
    return session.principal


SignedIn = Annotated[Principal, Depends(signed_in)]
Marketing = Annotated[Principal, Depends(need("marketing"))]
Experiments = Annotated[Principal, Depends(need("experiments"))]
Models = Annotated[Principal, Depends(need("models"))]
AdminOnly = Annotated[Principal, Depends(need("admin"))]
MerchantOnly = Annotated[Principal, Depends(need("merchant"))]

"""`Idempotency-Key` for every state-changing /v1 request (POST, PUT, PATCH, DELETE): a retry with the
same key returns the first response, marked `Idempotent-Replayed: true`, without a second effect; the
same key with a different request is refused (422); a retry that arrives while the first is still running
waits for its response (up to `WAIT_SECONDS`, then 409 with Retry-After). Server errors and rate-limit
refusals are not stored, so they can be retried, unless the request's transaction reached a COMMIT the
database did not refuse (it may have taken effect: `_commit_sent`). Keys are scoped to the caller (a
hash of its API key, or its address when anonymous) and expire after 24 h. Stored bodies are encrypted
under a key derived from the caller's raw credential and the Idempotency-Key
(`commerce.services.idempotency`).

Every state-changing /v1 request, with a key or without, is admitted here before its body is read:
the caller is authenticated and counted against its rate limit (`serving.deps.current_principal`, whose
answer the route then reuses), and a `POST /v1/events` is refused while its event quota has not one
event left. A refused caller's body is never read or parsed (a 1 MB batch from a key over its quota was
parsed whole before the 429), and a replay is a request like any other, refused to a revoked key and
to a caller over its quota. With the database gone, the claim is a
503 like any other database outage, never a 500."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from functools import partial

from fastapi import HTTPException
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from commerce.services import idempotency
from commerce.sqltypes import utcnow
from serving import deps
from serving.batch_writer import Backlog, PeriodicFlush
from serving.errors import (
    CANCELLED_DETAIL,
    CODE_BY_STATUS,
    OUTCOME_UNKNOWN,
    PROBLEM_JSON,
    log_cancelled,
    problem,
    send_problem,
)
from serving.resilience import (
    RETRY_AFTER_SECONDS,
    DatabaseBusy,
    is_cancel_request,
    is_contention,
    is_outage,
    unavailable_detail,
)

log = logging.getLogger(__name__)
HEADER = b"idempotency-key"
METHODS = {"POST", "PUT", "PATCH", "DELETE"}
WAIT_SECONDS = 10.0
NOT_STORED = {429}  # nor any 5xx


class UnsettledKeys(PeriodicFlush):
    """Ends of Idempotency-Key claims (`IdempotencyMiddleware._settle`) the database refused, retried
    every `every_seconds`, oldest first, until it takes them; at most `max_pending` wait (a `Backlog`).
    A claim is ended by its row id, caller and key, so a late end never touches a later claim. An end
    failing otherwise than for an outage or contention is logged and dropped (its key stays in progress
    until it expires), so it holds no later end back. Kept in this process: ends still waiting when it
    dies leave their keys in progress until they expire."""

    thread_name = "idempotency-keys"

    def __init__(self, every_seconds: float = 1.0, max_pending: int = 10_000) -> None:
        super().__init__(every_seconds)
        self.backlog = Backlog("idempotency key ends", max_pending)

    @property
    def backlogs(self) -> tuple[Backlog, ...]:
        return (self.backlog,)

    def note(self, end: Callable[[], None]) -> None:
        self.backlog.put(end)

    def flush(self) -> int:
        with self._flush_lock:
            pending = self.backlog.drain()
            ended = 0
            while pending:
                try:
                    pending[0]()
                    ended += 1
                except Exception as exc:  # any other, kept first, held every later end back for good
                    if is_outage(exc) or is_contention(exc):  # still away: the rest waits with it
                        return ended
                    log.error("settling an idempotency key failed for good, dropped: %r", exc)  # never would
                pending.pop(0)
            if ended:
                log.info("settled %d idempotency keys the database had refused to", ended)
            self.backlog.stored()
            return ended


def _caller(scope) -> tuple[str, bytes]:
    """The stored scope of a key (a hash of the credential, or of an anonymous caller's address) and the
    secret its responses are sealed under (the credential; for an anonymous caller, which has none, its
    address). The address is hashed too: through `X-Forwarded-For` from a believed proxy it is whatever
    text the client wrote, and one of 78 characters or more made every keyed request a 500 on PostgreSQL
    (the column holds 80). The credential is the API key as the API reads it (`serving.deps.bearer`:
    FastAPI's `get_authorization_scheme_param`, any case of `Bearer`, spaces around the key dropped),
    written `Bearer <key>`. Hashed as sent, `bearer <key>` or `Bearer  <key>` (the same key to the API)
    was another scope: a retry spelt so ran again."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, key = get_authorization_scheme_param(value.decode("latin-1"))
            if scheme.lower() == "bearer" and key:
                credential = f"Bearer {key}".encode("latin-1")
                return "key:" + hashlib.sha256(credential).hexdigest()[:40], credential
            break  # not a key: the API reads the caller as anonymous
    client = scope.get("client") or ("unknown", 0)
    address = f"ip:{client[0]}".encode()
    return "ip:" + hashlib.sha256(address).hexdigest()[:40], address


async def _reused(send, scope) -> None:
    await send_problem(
        send, scope, 422, "idempotency_key_reused", "this Idempotency-Key was used for another request"
    )


class IdempotencyMiddleware:
    def __init__(self, app, session_factory, prefix: str = "/v1"):
        self.app, self.factory, self.prefix = app, session_factory, prefix
        self.events_path = f"{prefix}/events"

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] not in METHODS
            or not scope["path"].startswith(self.prefix)
        ):
            return await self.app(scope, receive, send)
        key = next((v for n, v in scope.get("headers", ()) if n == HEADER), None)
        try:
            key_text = "" if key is None else key.decode("ascii")
        except UnicodeDecodeError:
            key_text = ""
        if key is not None and (not 1 <= len(key_text) <= 255 or not key_text.isprintable()):
            return await send_problem(
                send, scope, 400, "invalid_idempotency_key", "Idempotency-Key: 1-255 printable ASCII"
            )
        if not await self._admit(scope, receive, send):
            return
        if key is None:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        fingerprint = hashlib.sha256(
            b"\0".join(
                [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body]
            )
        ).hexdigest()
        caller, secret = _caller(scope)
        try:
            claim = await run_in_threadpool(
                idempotency.claim, self.factory, caller, key_text, fingerprint, utcnow()
            )
            if not claim.won:
                return await self._replay(scope, send, caller, secret, key_text, claim)
        except (DBAPIError, SATimeoutError) as exc:
            if is_cancel_request(exc):  # an operator's cancel, as serving.errors answers it
                return await _cancelled(send, scope)
            if is_contention(exc):  # another request holds the key's row (or SQLite's write lock)
                return await _busy(send, scope)
            if not is_outage(exc):
                raise
            scope["app"].state.serving.db_health.failed(exc)
            return await _unavailable(send, scope, exc)

        replayed = False

        async def replay_body():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status, content_type, out, started = 500, "application/json", [], False

        async def capture(message):
            nonlocal status, content_type, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                for name, value in message.get("headers", ()):
                    if name == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        scope.setdefault("state", {})  # shared with the route's request.state (deps sets commit_sent)
        settle = partial(self._settle, scope["app"].state.serving.unsettled_keys, key_text)
        answer = partial(idempotency.complete, self.factory, claim.id, caller, key_text, claim.at)
        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            if not _commit_sent(scope):
                await settle(partial(idempotency.release, self.factory, claim.id, caller, key_text, claim.at))
            elif not started:  # failed after its COMMIT before any answer was sent
                # answered as a lost COMMIT acknowledgement is: left unanswered, every retry for 24 h got
                # 409 request_in_progress with Retry-After 1 (retried for ever, never told to read back)
                unknown = json.dumps(problem(503, "outcome_unknown", OUTCOME_UNKNOWN, scope.get("path")))
                await settle(partial(answer, 503, PROBLEM_JSON, unknown.encode(), secret))
            raise
        if (status >= 500 or status in NOT_STORED) and not _commit_sent(scope):
            await settle(partial(idempotency.release, self.factory, claim.id, caller, key_text, claim.at))
        else:
            await settle(partial(answer, status, content_type, b"".join(out), secret))

    @staticmethod
    async def _settle(unsettled: UnsettledKeys, key: str, end: Callable[[], None]) -> None:
        """End a claim (release it or store its answer), the response already sent or failed. When the
        database refuses that too (it went away during the request), the claim stayed unanswered: every
        retry of the key waited, then got 409 request_in_progress, until it expired a day later (a checkout
        cut off in an outage could not be retried, one answered just before it never learnt its order).
        The end is then retried in the background until the database takes it."""
        try:
            await run_in_threadpool(end)
        except (DBAPIError, SATimeoutError):
            unsettled.note(end)
            log.warning(
                "could not settle idempotency key %r: database unavailable; retrying until it is back", key
            )

    async def _admit(self, scope, receive, send) -> bool:
        """Authenticate and rate-limit the caller as the route will (it reuses the answer), and refuse a
        batch of events once the caller's event quota has not one left, all before the body is read
        (FastAPI reads and parses it before any dependency runs); False once the refusal is sent."""
        request = Request(scope, receive)
        state = scope["app"].state.serving
        try:
            principal = await deps.current_principal(request, state, await deps.bearer(request))
            if scope["method"] == "POST" and scope["path"] == self.events_path:
                deps.ensure_events_within(await state.limiter.events_left(principal))
        except HTTPException as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            code = CODE_BY_STATUS.get(exc.status_code, "error")
            await send_problem(send, scope, exc.status_code, code, str(exc.detail), headers)
            return False
        except Exception as exc:  # the key lookup: the database gone, busy, or every slot taken
            if is_cancel_request(exc):
                await _cancelled(send, scope)
                return False
            if isinstance(exc, DatabaseBusy) or is_contention(exc):
                await _busy(send, scope)
                return False
            if not is_outage(exc):
                raise
            await _unavailable(send, scope, exc)
            return False
        return True

    async def _replay(
        self, scope, send, caller: str, secret: bytes, key: str, claim: idempotency.Claim
    ) -> None:
        if claim.mismatch:
            return await _reused(send, scope)
        stored, waited = claim.stored, 0.0
        while stored is not None and stored.status_code is None and waited < WAIT_SECONDS:
            await asyncio.sleep(0.05)
            waited += 0.05
            stored = await run_in_threadpool(idempotency.lookup, self.factory, caller, key)
        if stored is None or stored.status_code is None:  # still running, or it failed and was released
            return await send_problem(
                send, scope, 409, "request_in_progress", "a request with this Idempotency-Key is running",
                [(b"retry-after", b"1")],
            )  # fmt: skip
        try:
            body = idempotency.unseal(secret, caller, key, stored.body or b"")
        except idempotency.Unreadable:  # not this credential's response: as if the key were reused
            log.warning("the stored response of idempotency key %r does not open", key)
            return await _reused(send, scope)
        await send(
            {
                "type": "http.response.start",
                "status": stored.status_code,
                "headers": [
                    (b"content-type", (stored.content_type or "application/json").encode("latin-1")),
                    (b"content-length", str(len(body)).encode()),
                    (b"idempotent-replayed", b"true"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _commit_sent(scope) -> bool:
    """The request's transaction reached COMMIT: it may have taken effect even if it then failed (the
    acknowledgement lost: 503 outcome_unknown; cancelled by the shutdown grace), so its key is never
    released for a retry to run it again: the answer is stored whatever its status, or, when none was
    sent, `outcome_unknown`."""
    return bool(scope.get("state", {}).get("commit_sent"))


async def _unavailable(send, scope, error: BaseException) -> None:
    retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
    await send_problem(send, scope, 503, "unavailable", unavailable_detail(error), retry)


async def _cancelled(send, scope) -> None:
    """As serving.errors answers a statement a cancel request ended: logged, nothing kept, retry in 5 s."""
    log_cancelled(scope["method"], scope["path"])
    retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
    await send_problem(send, scope, 503, "unavailable", CANCELLED_DETAIL, retry)


async def _busy(send, scope) -> None:
    """As serving.errors answers a lock wait or a full set of slots: nothing was changed, retry in 1 s."""
    await send_problem(
        send, scope, 503, "unavailable", "the service is busy; retry shortly", [(b"retry-after", b"1")]
    )


def document(app, prefix: str = "/v1") -> None:
    """Declare the optional `Idempotency-Key` header on every state-changing operation under `prefix`."""
    build = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for path, item in schema.get("paths", {}).items():
            if not path.startswith(prefix):
                continue
            for method, operation in item.items():
                if method.upper() in METHODS:
                    operation.setdefault("parameters", []).append(
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            "description": "Retry safely: a repeat with the same key returns the first "
                            "response (header Idempotent-Replayed) without a second effect; a key is free "
                            "for another request after 24 h (the same request is replayed after that too).",
                        }
                    )
        return schema

    app.openapi = openapi

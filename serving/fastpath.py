"""An ASGI fast path for the hottest calls, GET /v1/shoppers/{id}/recommendations and
GET /v1/sessions/{id}/recommendations by the storefront.

FastAPI resolves every parameter and dependency through generic machinery that costs more than the page
itself. This handler answers the common case with the same pieces as the route (the principal cache,
role and ownership rules, `RecommendationQuery` validation, `shopper_page`) and hands everything else
to FastAPI untouched: unknown or uncached keys, throttled roles, invalid parameters and any refusal, so
errors keep their one documented shape and rate limits are never counted twice. It is asked first, by
the outer request layer (serving/edge.py), which measures, logs and tags its answers like any other.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import get_args, get_origin

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from commerce.services._util import lookup_name
from serving.deps import STOREFRONT_ROLES, access_refusal
from serving.routers.recommendations import shopper_page_json
from serving.routers.sessions import session_page_json
from serving.schemas.recommendations import RecommendationQuery
from serving.schemas.sessions import SessionPageQuery
from serving.sessions import SESSION_ID
from serving.state import ServingState

PATH = re.compile(r"^/v1/shoppers/([^/]+)/recommendations$")
ROUTE = SimpleNamespace(path="/v1/shoppers/{shopper_id}/recommendations")  # the metrics label
SESSION_PATH = re.compile(r"^/v1/sessions/([^/]+)/recommendations$")
SESSION_ROUTE = SimpleNamespace(path="/v1/sessions/{session_id}/recommendations")
QUERY_CACHE_SIZE = 4096
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def route_params(query_string: bytes, model: type[BaseModel]) -> dict:
    """`model`'s fields from a query string as FastAPI gives them to the route's query model: parsed by
    Starlette's `QueryParams` (blank values kept, `+` a space, bytes that are no UTF-8 replaced), a list
    field every value of its name, any other field the last one. Dropping blank values here made `?n=` a
    page from the fast path and a 422 from the route."""
    received = QueryParams(query_string)
    return {
        name: received.getlist(name) if _is_list(field.annotation) else received[name]
        for name, field in model.model_fields.items()
        if name in received
    }


def _is_list(annotation) -> bool:
    """`list[str]` or `list[str] | None`."""
    return any(get_origin(kind) is list for kind in (annotation, *get_args(annotation)))


class RecommendationFastPath:
    """Called by the outer request layer (serving/edge.py) before the rest of the middleware: `answer`
    returns the page's JSON body, or None to let the request go on to FastAPI."""

    def __init__(self, state: ServingState):
        self.state = state
        self._queries: dict[tuple[type, bytes], RecommendationQuery | SessionPageQuery] = {}

    async def answer(self, scope) -> bytes | None:
        """A GET's body when the fast path answers it (the matched route left in the scope for the metrics
        and the access log), else None. A request with a body is left to FastAPI (and its size limit).
        The id is taken from the path as the server decoded it, as FastAPI takes it: decoded once more,
        `/v1/shoppers/s%2531/...` was s1's page here and s%31's page in the route."""
        path = scope["path"]
        if not path.endswith("/recommendations"):  # every other route: one string test
            return None
        match = PATH.match(path)
        if match is not None:
            route, body = ROUTE, self._answer(scope, match.group(1))
        else:
            match = SESSION_PATH.match(path)
            if match is None:
                return None
            route, body = SESSION_ROUTE, await self._session_answer(scope, match.group(1))
        if body is not None:
            scope["route"] = route
        return body

    def _principal(self, scope):
        """The caller when the fast path may answer: a cached key of an unthrottled storefront role, on a
        request without a body."""
        auth = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if auth is None:  # the first, as FastAPI reads it
                    auth = value
            elif name in _BODY_HEADERS and value != b"0":
                return None
        scheme, _, key = (auth or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return None
        hit, principal = self.state.principals.get(key.strip())
        if not hit or principal is None or access_refusal(principal, STOREFRONT_ROLES):
            return None
        if self.state.limiter.limit_for(principal) is not None:  # throttled roles: counted once, by FastAPI
            return None
        scope.setdefault("state", {})["principal"] = principal  # for the access log
        return principal

    def _answer(self, scope, shopper_id: str) -> bytes | None:
        """The response body, or None to let FastAPI handle the request."""
        state = self.state
        principal = self._principal(scope)
        if principal is None or access_refusal(principal, STOREFRONT_ROLES, shopper_id):
            return None
        if lookup_name(shopper_id) != shopper_id:  # a look-alike: the route reads it (`stored_shopper`)
            return None
        try:
            query = self._query(scope["query_string"])
            if query.session_id is not None:  # a live visit to blend in: the route reads the session
                return None
            return shopper_page_json(state, shopper_id, query)
        except (ValidationError, HTTPException):
            return None

    async def _session_answer(self, scope, session_id: str) -> bytes | None:
        principal = self._principal(scope)
        if principal is None or not SESSION_ID.match(session_id):
            return None
        try:
            query = self._query(scope["query_string"], SessionPageQuery)
            items = await self.state.sessions.items(principal.key_id, session_id)
            return session_page_json(self.state, items, principal.shopper_id, session_id, query)
        except (ValidationError, HTTPException):
            return None

    def _query(self, query_string: bytes, model: type = RecommendationQuery):
        """The validated query, remembered per query string: storefronts send a handful of them."""
        query = self._queries.get((model, query_string))
        if query is None:
            query = model.model_validate(route_params(query_string, model))  # invalid ones raise: never kept
            if len(self._queries) >= QUERY_CACHE_SIZE:
                self._queries.clear()
            self._queries[(model, query_string)] = query
        return query

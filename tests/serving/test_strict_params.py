"""Numbers and times in query and path parameters have one spelling, plain ASCII (serving/schemas/base.py):
FastAPI and pydantic took `1_0`, `+5`, ` 5`, `05` and `5.0` for an integer, `9e-1` and `.9` for a decimal,
a unix timestamp for a time. Every other spelling is a 422 `invalid_request` naming the parameter, from the
route and from the recommendation fast path alike (spellings pydantic already refused, `１０`, `1e1`, `nan`,
stay refused); and every route's numeric and time parameters use the plain types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from types import UnionType
from typing import Annotated, Union, get_args, get_origin
from urllib.parse import quote

import annotated_types
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import AwareDatetime, BaseModel, FutureDatetime, NaiveDatetime, PastDatetime

from commerce.db import transaction
from commerce.services.access import create_api_key
from serving.schemas.base import PLAIN_FLOAT, PLAIN_INSTANT, PLAIN_INT
from tests.search.conftest import api, engine, factory, shop, sqlite_templates  # noqa: F401
from tests.search.test_api import _campaign
from tests.serving.conftest import auth
from tests.serving.test_console import sign_in

SESSION = "a" * 16
BAD_INTEGERS = ["1_0", "１０", "٥", "+5", " 5", "5 ", "05", "1e1", "5.0", "0x5", "-0", "nan", "inf"]
BAD_DECIMALS = ["+0.9", " 0.9", "0.9 ", "０.９", "0_0.9", "00.9", ".9", "9.", "9e-1", "nan", "inf", "-inf"]
BAD_INSTANTS = [
    "1780000000",  # a unix timestamp
    "1780000000.5",
    "2026-06-01",  # a day is not an instant
    "2026-06-01 08:00:00Z",
    "20260601T080000Z",
    "２０２６-06-01T08:00:00Z",
    "2026-06-01T08:00:00+0800",
    " 2026-06-01T08:00:00Z",
]
#: (role, path, parameter, a good value): a representative route per kind and place.
INTEGER_ROUTES = [
    ("storefront", "/v1/shoppers/s1/recommendations?n={}", ("query", "n"), "5"),  # the fast path's
    ("storefront", f"/v1/sessions/{SESSION}/recommendations?n={{}}", ("query", "n"), "5"),  # its too
    ("shopper", "/v1/shoppers/s1/buy-again?n={}", ("query", "n"), "5"),
    ("storefront", "/v1/rankings?limit={}", ("query", "limit"), "5"),
    ("admin", "/v1/api-keys?offset={}", ("query", "offset"), "0"),
    ("shopper", "/v1/orders/{}", ("path", "order_id"), "999999"),
]
DECIMAL_ROUTES = [
    ("merchant", "/v1/merchants/m1/replenishment?service_level={}", ("query", "service_level"), "0.9"),
]
INSTANT_ROUTES = [
    ("marketer", "/v1/campaigns?active_at={}", ("query", "active_at"), "2026-06-01T08:00:00Z"),
]
CASES = [
    *((route, BAD_INTEGERS) for route in INTEGER_ROUTES),
    *((route, BAD_DECIMALS) for route in DECIMAL_ROUTES),
    *((route, BAD_INSTANTS) for route in INSTANT_ROUTES),
]
IDS = [f"{loc[1]} of {path.split('?')[0]}" for (_, path, loc, _), _ in CASES]


def _url(path: str, value: str) -> str:
    return path.format(quote(value, safe=""))


@pytest.mark.parametrize(("route", "bads"), CASES, ids=IDS)
def test_a_number_or_time_not_written_plainly_is_a_422_naming_the_parameter(client, keys, route, bads):
    """Every bad spelling of a route's parameter against one app: a refused request changes nothing (an
    app and marketplace per spelling was 98 setups, 36 s of the suite)."""
    role, path, loc, good = route
    headers = auth(keys[role])
    assert client.get(_url(path, good), headers=headers).status_code in (200, 404)  # key cached too
    for bad in bads:
        refused = client.get(_url(path, bad), headers=headers)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json", bad
        body = refused.json()
        assert body["code"] == "invalid_request", (bad, body)
        assert [e["loc"] for e in body["errors"]] == [list(loc)], (bad, body)


def test_the_fast_path_leaves_a_number_not_written_plainly_to_the_route(client, keys, answered):
    """It validates the query with the route's model: `?n=1_0` was a page of 10 there, a 422 now."""
    storefront = auth(keys["storefront"])
    url = "/v1/shoppers/s1/recommendations"
    assert client.get(url, params={"n": "5"}, headers=storefront).status_code == 200
    answered.clear()
    assert client.get(url, params={"n": "3"}, headers=storefront).status_code == 200
    assert answered[-1] is not None  # the fast path answers a plain query
    for bad in ("1_0", "１０", "+3", "03"):
        assert client.get(url, params={"n": bad}, headers=storefront).status_code == 422, bad
        assert answered[-1] is None, bad


@pytest.mark.parametrize(
    ("path", "good"),
    [
        ("/v1/shoppers/s1/recommendations?n={}", ["1", "10", "100"]),
        ("/v1/merchants/m1/replenishment?service_level={}", ["0.5", "0.95", "0.999"]),
        ("/v1/campaigns?active_at={}", ["2026-06-01T08:00Z", "2026-06-01T16:00:00.123456+08:00"]),
    ],
)
def test_plain_forms_are_read(client, keys, path, good):
    role = {"/v1/shoppers": "storefront", "/v1/merchants": "merchant", "/v1/campaigns": "marketer"}
    headers = auth(keys[next(r for p, r in role.items() if path.startswith(p))])
    for value in good:
        answered = client.get(_url(path, value), headers=headers)
        assert answered.status_code == 200, (value, answered.text)


def test_numbers_out_of_range_are_still_refused_by_their_bounds(client, keys):
    refused = client.get("/v1/rankings?limit=101", headers=auth(keys["storefront"])).json()
    assert refused["errors"][0]["type"] == "less_than_equal"
    refused = client.get("/v1/orders/2147483648", headers=auth(keys["shopper"])).json()
    assert refused["errors"][0]["loc"] == ["path", "order_id"]


def test_the_console_report_reads_only_a_plain_day(api, shop):  # noqa: F811
    """`date.fromisoformat` also read `20260601` and `2026-W22-1`: the report shows its own message."""
    with transaction(shop) as s:
        merchant = create_api_key(s, "merchant", merchant_id="M1")[1]
    cid = _campaign(api, merchant).json()["campaign_id"]
    sign_in(api, merchant)
    page = f"/console/keyword-campaigns/{cid}"
    assert "Dates must look like" not in api.get(page, params={"start": "2026-06-01"}).text
    for bad in ("20260601", "2026-W22-1", "２０２６-06-01", "2026-06-01T00:00"):
        assert "Dates must look like" in api.get(page, params={"start": bad}).text, bad
        assert "Dates must look like" in api.get(page, params={"end": bad}).text, bad


NUMERIC = (int, float, Decimal, datetime, date)
PLAIN = (PLAIN_INT, PLAIN_FLOAT, PLAIN_INSTANT)


def _parameters(dependant):
    """(where, name, type, metadata) of every path and query parameter a route reads, a query model's
    fields one by one, its dependencies' too."""
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        for param in params:
            info = param.field_info
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                for name, field in info.annotation.model_fields.items():
                    yield where, name, field.annotation, field.metadata
            else:
                yield where, param.name, info.annotation, info.metadata
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def _kinds(annotation, metadata=()):
    """(base type, metadata) of each kind an annotation allows: `X | None` is X, `Annotated` unwrapped."""
    if get_origin(annotation) is Annotated:
        base, *more = get_args(annotation)
        yield from _kinds(base, (*metadata, *more))
    elif get_origin(annotation) in (Union, UnionType):
        for arg in get_args(annotation):
            yield from _kinds(arg, metadata)
    else:
        yield annotation, metadata


def _plain_after_bounds(metadata: tuple) -> bool:
    """A plain check is there, after every bound: before one, the OpenAPI schema said `ge` for `minimum`."""
    at = [i for i, check in enumerate(metadata) if any(check is plain for plain in PLAIN)]
    bounds = [i for i, m in enumerate(metadata) if isinstance(m, annotated_types.BaseMetadata)]
    return bool(at) and all(i < at[-1] for i in bounds)


def test_every_numeric_or_time_parameter_of_every_route_is_plain(client):
    """A new route that reads a number or a time from its path or query with a bare `int`, `float` or
    `datetime` fails here: it would take `1_0`, `+5` or a unix timestamp again."""
    checked, lenient = [], []
    for context in iter_route_contexts(client.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for where, name, annotation, metadata in _parameters(route.dependant):
            for kind, more in _kinds(annotation, tuple(metadata)):
                if isinstance(kind, type) and issubclass(kind, NUMERIC) and kind is not bool:
                    checked.append((context.path, name))
                    if not _plain_after_bounds(more):
                        lenient.append((context.path, where, name, kind.__name__))
    assert not lenient, lenient
    assert ("/v1/orders/{order_id}", "order_id") in checked  # the walk reached path parameters,
    assert ("/v1/shoppers/{shopper_id}/recommendations", "n") in checked  # query models' fields,
    assert ("/console/keys/{key_id}/revoke", "key_id") in checked  # and the console (not in OpenAPI)
    assert len(checked) > 50
    spec = client.get("/openapi.json").json()
    schemas = [
        p["schema"]
        for item in spec["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
    ]
    assert not [s for s in schemas if {"ge", "le", "gt", "lt"} & set(s)]  # bounds are minimum/maximum
    limit = next(
        p["schema"] for p in spec["paths"]["/v1/rankings"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 100)


BAD_BODY_INSTANTS = [1780000000, 1780000000.5, *BAD_INSTANTS]


def test_a_body_time_not_written_as_rfc_3339_is_a_422_naming_the_field(client, keys):
    """Pydantic read a JSON number, a numeric string or `2026-06-01 08:00Z` as a time: a body's times have
    the query's one spelling too (`serving.schemas.base.Instant`). Each spelling against one app: a
    refused write stores nothing."""
    for bad in BAD_BODY_INSTANTS:
        event = {"event_id": "e-1", "ts": bad, "shopper_id": "s1", "event_type": "view", "product_id": "p02"}
        refused = client.post("/v1/events", json={"events": [event]}, headers=auth(keys["shopper"]))
        assert refused.status_code == 422, (bad, refused.text)
        assert [e["loc"] for e in refused.json()["errors"]] == [["body", "events", 0, "ts"]], bad
        coupon = {"coupon_id": "c-1", "kind": "amount_off", "value": "1", "min_spend": "0", "starts_at": bad}
        refused = client.post("/v1/coupons", json=coupon, headers=auth(keys["marketer"]))
        assert refused.status_code == 422, (bad, refused.text)
        assert [e["loc"] for e in refused.json()["errors"]] == [["body", "starts_at"]], bad


def test_a_body_time_written_as_rfc_3339_is_read_in_utc(client, keys):
    coupon = {"coupon_id": "c-2", "kind": "amount_off", "value": "1", "min_spend": "0"}
    made = client.post(
        "/v1/coupons",
        json={**coupon, "starts_at": "2026-06-01T16:00:00.5+08:00", "ends_at": "2026-06-02T08:00Z"},
        headers=auth(keys["marketer"]),
    )
    assert made.status_code == 201, made.text
    assert made.json()["starts_at"].startswith("2026-06-01T08:00:00.5")
    assert made.json()["ends_at"].startswith("2026-06-02T08:00:00")


#: pydantic's time types (not `datetime` subclasses at run time)
TIMES = (AwareDatetime, NaiveDatetime, PastDatetime, FutureDatetime)


def _time_fields(model: type[BaseModel], seen: set):
    """(model, field, metadata) of every time field a body model holds, nested models' included."""
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        for kind, more in _kinds(field.annotation, tuple(field.metadata)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _time_fields(kind, seen)
            for arg in get_args(kind):  # list[Model], dict[str, Model]
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    yield from _time_fields(arg, seen)
            if kind in TIMES or (isinstance(kind, type) and issubclass(kind, datetime)):
                yield model.__name__, name, more


def test_every_time_field_of_every_request_body_is_an_instant(client):
    """A new body field typed `datetime` would take a unix timestamp again: every one is `Instant`."""
    from serving.schemas.base import _written_instant

    seen: set = set()
    fields = []
    for context in iter_route_contexts(client.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.body_field is not None:
            body = route.body_field.field_info.annotation
            if isinstance(body, type) and issubclass(body, BaseModel):
                fields.extend(_time_fields(body, seen))
    assert ("EventIn", "ts") in [(m, f) for m, f, _ in fields]
    lenient = [
        (m, f) for m, f, more in fields if not any(getattr(v, "func", None) is _written_instant for v in more)
    ]
    assert not lenient, lenient

"""Property-level authorization: for every writable field of every request schema, who may set it.

Endpoint roles (serving.deps) say who may call an operation; this table says which of those callers may
set each field of its body. Fields that change who earns what (self-operated terms, cost prices) are
admin-only, so a merchant key cannot, for example, publish a product as self-operated to pay no
commission. The table is the one place for this rule and `enforce_field_access` (a dependency of every
/v1 operation) the one place it is applied: a field sent by a caller whose role is not listed is refused
with 403 before the endpoint runs. Every field must have an entry; one without is refused for everyone
(fail closed), and tests/security/test_field_access.py fails until the entry is written.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from typing import Annotated

from fastapi import HTTPException, Request, status
from pydantic import BaseModel

from serving.deps import PrincipalDep
from serving.security import ANONYMOUS

#: The field may be set by every role the operation itself admits.
ENDPOINT = "endpoint"
ADMIN = frozenset({"admin"})

FieldRoles = frozenset[str] | str


def _open(*fields: str) -> dict[str, FieldRoles]:
    return dict.fromkeys(fields, ENDPOINT)


COUPON_TERMS = (
    "name", "kind", "value", "cap", "min_spend", "scope_type", "scope_id", "per_shopper_limit", "usage_limit",
    "budget", "starts_at", "ends_at", "requires_grant", "campaign_id",
)  # fmt: skip

FIELD_ROLES: dict[str, dict[str, FieldRoles]] = {
    # catalog
    "MerchantApply": _open("name", "country", "licence_no", "brands"),
    "MerchantReview": _open("decision", "reason"),
    "ProductCreate": {
        **_open("sku", "title", "category_id", "brand", "origin_country", "price", "fulfillment", "stock"),
        # Who earns what: self-operated goods pay no commission and book price - cost as platform margin.
        "self_operated": ADMIN,
        "cost_price": ADMIN,
    },
    "ProductUpdate": _open("title", "price", "status"),
    # Who earns what; the endpoint itself is admin-only, and the field says so again.
    "CommissionSet": {"commission_rate": ADMIN},
    "StockSet": _open("quantity"),
    # orders
    "CartLineIn": _open("product_id", "quantity"),
    "CheckoutIn": _open("lines", "coupon_id", "partner_id"),
    "PaymentIn": _open("payment_ref"),
    "ReasonIn": _open("reason"),
    "ShipIn": _open("tracking_no", "location"),
    "StatusIn": _open("status"),
    "TrackingIn": _open("status", "location", "note"),
    "RefundDecisionIn": _open("decision", "note"),
    # events
    "EventBatch": _open("events"),
    "EventIn": _open(
        "event_id",
        "ts",
        "shopper_id",
        "event_type",
        "product_id",
        "quantity",
        "value",
        "session_id",
        "campaign_id",
        "coupon_id",
        "query",
    ),
    # experiments and marketing
    "ExperimentCreate": _open(
        "name",
        "variants",
        "layer",
        "traffic",
        "description",
        "primary_metric",
        "planned_units_per_variant",
        "inference",
    ),
    "VariantIn": _open("name", "weight", "config"),
    "ExposureIn": _open("unit_id", "variant"),
    "CampaignCreate": _open("name", "channel", "budget", "starts_at", "ends_at", "control_share"),
    "PlanIn": _open("candidates", "region", "segment", "margin_rate", "method", "seed"),
    "Candidate": _open(
        "shopper_id", "coupon_id", "p_control", "p_treated", "spend_control", "spend_treated", "p_redeem"
    ),
    # coupons: marketers and admins (the endpoints' roles) set every term, budget included
    "CouponCreate": _open(*COUPON_TERMS, "coupon_id"),
    "CouponEdit": _open(*COUPON_TERMS),
    # models: moving an alias (admin only, by the endpoint)
    "AliasIn": _open("version"),
    # search and keyword promotion: a merchant's own bids and budgets, the storefront's clicks
    "ClickIn": _open("token"),
    "KeywordCampaignIn": _open("name", "daily_budget", "product_ids", "keywords"),
    "KeywordCampaignPatch": _open("daily_budget", "status"),
    "KeywordIn": _open("keyword", "match_type", "bid"),
    "KeywordPatch": _open("bid", "status"),
    # logistics: a merchant's own shipping rule
    "ShippingRuleIn": _open("partner_id", "max_days"),
    "LocationOwnerIn": _open("merchant_id"),
    # access
    "ApiKeyCreate": _open("role", "name", "shopper_id", "merchant_id"),
}


def may_set(schema: str, field: str, role: str) -> bool:
    """Whether `role` may set `schema.field` (ENDPOINT fields: the operation's own role check decides)."""
    allowed = FIELD_ROLES.get(schema, {}).get(field)
    if allowed is None:
        return False
    return allowed == ENDPOINT or role in allowed


def nested_models(annotation) -> list[type[BaseModel]]:
    """The request models inside a field's type (Model, list[Model], Model | None, Annotated[...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return nested_models(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]
    return []


@functools.cache
def _shape(model: type[BaseModel]) -> tuple[tuple[str, tuple[type[BaseModel], ...]], ...]:
    """(field, nested request models) per field of `model`, worked out once per model."""
    return tuple((name, tuple(nested_models(info.annotation))) for name, info in model.model_fields.items())


@functools.cache
def _unrestricted(model: type[BaseModel]) -> bool:
    """Whether every field, at every depth, is open to whoever may call the operation: then nothing in
    a body of this model can be refused and the check stops at once (e.g. a 1,000-event batch)."""
    return all(
        FIELD_ROLES.get(model.__name__, {}).get(name) == ENDPOINT and all(_unrestricted(m) for m in inner)
        for name, inner in _shape(model)
    )


def sent_fields(model: type[BaseModel], data) -> set[tuple[str, str]]:
    """(schema, field) for every field present in a JSON body, nested request models included (a part of
    the body whose every field is open to all callers is not walked)."""
    found: set[tuple[str, str]] = set()
    if not isinstance(data, dict) or _unrestricted(model):
        return found
    for name, inner in _shape(model):
        if name not in data:
            continue
        found.add((model.__name__, name))
        for nested in inner:
            value = data[name]
            for item in value if isinstance(value, list) else [value]:
                found |= sent_fields(nested, item)
    return found


def _body_model(request: Request) -> type[BaseModel] | None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    params = getattr(dependant, "body_params", None) or []
    if len(params) != 1:
        return None
    models = nested_models(params[0].field_info.annotation)
    return models[0] if models else None


async def enforce_field_access(request: Request, principal: PrincipalDep) -> None:
    """Refuse (403; 401 without a key) a body that sets a field the caller's role may not set."""
    model = _body_model(request)
    if model is None or _unrestricted(model):
        return  # no body, or nothing in it any caller of the operation may not set: not even parsed
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError:
        return  # not JSON: request validation answers 422
    refused = sorted(
        f"{schema}.{field}"
        for schema, field in sent_fields(model, data)
        if not may_set(schema, field, principal.role)
    )
    if not refused:
        return
    if principal.role == ANONYMOUS:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"an API key is required to set {', '.join(refused)}",
            {"WWW-Authenticate": "Bearer"},
        )
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, f"role {principal.role!r} may not set {', '.join(refused)}"
    )

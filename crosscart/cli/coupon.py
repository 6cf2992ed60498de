"""`crosscart coupon`: create, list, show, edit (while unused) and retire coupons.

Thin layer over `commerce.services.coupons`, the calls the API (`/v1/coupons`) and the console make;
coupons print as the API's JSON shape.
"""

from __future__ import annotations

from datetime import datetime

import typer

app = typer.Typer(help="Coupons: create, list, show, edit while unused, retire.", no_args_is_help=True)


def _run(action):
    """Run `action(session)` in one transaction; domain and input errors exit 2 with the message."""
    import commerce.all_models  # noqa: F401  (complete metadata for the relationships)
    from commerce.db import make_engine, make_session_factory, transaction
    from commerce.errors import DomainError
    from crosscart.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    try:
        with transaction(make_session_factory(make_engine(settings.resolved_database_url))) as session:
            return action(session)
    except (DomainError, ValueError, ArithmeticError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _json(coupon) -> str:
    from serving.schemas.coupons import CouponOut

    return CouponOut.model_validate(coupon, from_attributes=True).model_dump_json(indent=2)


def _utc(value: datetime | None) -> datetime | None:
    """Times given without a zone are UTC."""
    from datetime import UTC

    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


KIND = typer.Option(None, "--kind", help="amount_off (value in CNY) or percent_off (value a fraction).")
VALUE = typer.Option(None, "--value", help="CNY off, or the fraction off (0.15 = 15%).")
CAP = typer.Option(None, "--cap", help="Largest discount for percent_off, CNY.")
MIN_SPEND = typer.Option(None, "--min-spend", help="Eligible goods needed, CNY.")
SCOPE = typer.Option(None, "--scope", help="platform, category:<id>, merchant:<id> or product:<id>.")
PER_SHOPPER = typer.Option(None, "--per-shopper", help="Uses per shopper.")
USAGE = typer.Option(None, "--usage-limit", help="Total uses (default unlimited).")
BUDGET = typer.Option(None, "--budget", help="Total discount budget, CNY.")
STARTS = typer.Option(None, "--starts", help="Valid from (UTC).")
ENDS = typer.Option(None, "--ends", help="Valid until (UTC).")
GRANT = typer.Option(None, "--requires-grant/--open", help="Only shoppers granted it (campaign coupons).")
CAMPAIGN = typer.Option(
    None, "--campaign", help="Make it an arm of this stored campaign (with --requires-grant)."
)
NAME = typer.Option(None, "--name")


def _changes(**given) -> dict:
    """The options given, as service fields (`--scope kind:id` split in two)."""
    out = {k: v for k, v in given.items() if v is not None}
    if "scope" in out:
        kind, _, scope_id = out.pop("scope").partition(":")
        out["scope_type"], out["scope_id"] = kind, scope_id or None
    for key in ("starts_at", "ends_at"):
        if key in out:
            out[key] = _utc(out[key])
    return out


@app.command("create")
def create(
    kind: str = typer.Option(..., "--kind", help=KIND.help),
    value: str = typer.Option(..., "--value", help=VALUE.help),
    cap: str | None = CAP,
    min_spend: str | None = MIN_SPEND,
    scope: str | None = SCOPE,
    per_shopper: int | None = PER_SHOPPER,
    usage_limit: int | None = USAGE,
    budget: str | None = BUDGET,
    starts: datetime | None = STARTS,
    ends: datetime | None = ENDS,
    requires_grant: bool | None = GRANT,
    campaign: str | None = CAMPAIGN,
    name: str | None = NAME,
    coupon_id: str | None = typer.Option(None, "--id", help="Default: generated."),
) -> None:
    """Create a platform coupon; prints it as JSON."""
    from commerce.services.coupons import CouponInput, create_coupon

    fields = _changes(
        kind=kind, value=value, cap=cap, min_spend=min_spend, scope=scope, per_shopper_limit=per_shopper,
        usage_limit=usage_limit, budget=budget, starts_at=starts, ends_at=ends,
        requires_grant=requires_grant, campaign_id=campaign, name=name, coupon_id=coupon_id,
    )  # fmt: skip
    typer.echo(_run(lambda s: _json(create_coupon(s, CouponInput(**fields)))))


@app.command("list")
def list_(
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign's coupons."),
    limit: int = typer.Option(100, "--limit"),
    offset: int = typer.Option(0, "--offset"),
) -> None:
    """Coupons as a JSON list (id order)."""
    from commerce.services.coupons import list_coupons

    def run(session):
        page = list_coupons(session, campaign_id=campaign, limit=limit, offset=offset)
        return "[" + ",\n".join(_json(c) for c in page.items) + "]"

    typer.echo(_run(run))


@app.command("show")
def show(coupon_id: str = typer.Argument(...)) -> None:
    """One coupon with its counters (used, spent)."""
    from commerce.services.coupons import get_coupon

    typer.echo(_run(lambda s: _json(get_coupon(s, coupon_id))))


@app.command("edit")
def edit(
    coupon_id: str = typer.Argument(...),
    kind: str | None = KIND,
    value: str | None = VALUE,
    cap: str | None = CAP,
    min_spend: str | None = MIN_SPEND,
    scope: str | None = SCOPE,
    per_shopper: int | None = PER_SHOPPER,
    usage_limit: int | None = USAGE,
    budget: str | None = BUDGET,
    starts: datetime | None = STARTS,
    ends: datetime | None = ENDS,
    requires_grant: bool | None = GRANT,
    campaign: str | None = CAMPAIGN,
    name: str | None = NAME,
) -> None:
    """Change terms of a coupon nobody holds or has used yet (exit 2 once granted or redeemed)."""
    from commerce.services.coupons import update_coupon

    fields = _changes(
        kind=kind, value=value, cap=cap, min_spend=min_spend, scope=scope, per_shopper_limit=per_shopper,
        usage_limit=usage_limit, budget=budget, starts_at=starts, ends_at=ends,
        requires_grant=requires_grant, campaign_id=campaign, name=name,
    )  # fmt: skip
    if not fields:
        typer.echo("error: nothing to change; give at least one option", err=True)
        raise typer.Exit(2)
    typer.echo(_run(lambda s: _json(update_coupon(s, coupon_id, **fields))))


@app.command("retire")
def retire(coupon_id: str = typer.Argument(...)) -> None:
    """End the coupon now; redemptions already made stay valid."""
    from commerce.services.coupons import end_coupon

    typer.echo(_run(lambda s: _json(end_coupon(s, coupon_id))))

"""Rendering for the console: templates, the role-filtered navigation, errors as pages, one way to run an
action and report a refusal on the page instead of a JSON error."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError as SchemaError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as DatabaseTimeout
from sqlalchemy.orm import Session

from commerce.errors import DomainError
from serving.console.auth import CSRF_FIELD, CSRF_HEADER, ConsoleSession, console_session
from serving.errors import database_refusal, status_for

HERE = Path(__file__).parent
HTMX = "vendor/htmx-2.0.11.min.js"
templates = Jinja2Templates(directory=HERE / "templates")
T = TypeVar("T")


def choices(name: str, options: T) -> T:
    """A fixed list of a form's choices (values, `(value, label)` pairs or a value-to-label dict), given
    to every template as `name`: a form kept without its page (`form_fields`) draws the select that
    loops over it as a select again, from the template's source, without the route or the database."""
    templates.env.globals[name] = options
    return options


def segment(value: object) -> str:
    """`value` as one URL path segment. Names and ids are chosen by callers (an experiment named
    `../keys/1/revoke?`): put raw into a form's action, one would send another user's click, with their
    CSRF token, to another console action. Every id in a console URL goes through this (`|seg`)."""
    return quote(str(value), safe="")


templates.env.filters["seg"] = segment


def coupon_terms(coupon) -> str:
    """A coupon's terms as a person reads them, "15% off, cap 60.00 CNY, min spend 199.00 CNY": the
    stored four-decimal values read "15.0000% off" and "30.0000 CNY off", amounts without a currency."""
    value = Decimal(str(coupon.value))
    if coupon.kind == "percent_off":
        parts = [f"{(value * 100).normalize():f}% off"]
    else:
        parts = [f"{value:,.2f} CNY off"]
    if coupon.cap:
        parts.append(f"cap {Decimal(str(coupon.cap)):,.2f} CNY")
    if coupon.min_spend:
        parts.append(f"min spend {Decimal(str(coupon.min_spend)):,.2f} CNY")
    return ", ".join(parts)


templates.env.filters["coupon_terms"] = coupon_terms


def cny(amount) -> str:
    """An amount as the console shows money: two decimals, thousands grouped ("1,234.30"); a raw stored
    value read "1234.3" on one page and "1,234.30" on the next. Form inputs keep the raw value."""
    return f"{Decimal(str(amount)):,.2f}"


templates.env.filters["cny"] = cny

DELIVERED = ("delivered", "completed")


def expected_delivery(order, now) -> str:
    """What a merchant reads about an order's arrival: the window promised at checkout (timed by the
    delivery-time model when one was loaded, else the partner's published days) as UTC dates, whether it
    is late, or that it arrived. One wording for the shipments list and the order page."""
    if order.status in DELIVERED:
        return "delivered"
    if order.status in ("cancelled", "refunded"):
        return f"none ({order.status})"
    earliest, latest = order.delivery_earliest, order.delivery_latest
    window = (
        f"{earliest:%Y-%m-%d} to {latest:%Y-%m-%d}"
        if earliest.date() != latest.date()
        else f"{latest:%Y-%m-%d}"
    )
    if now > latest:
        return f"late: promised by {latest:%Y-%m-%d}"
    return window


templates.env.filters["expected_delivery"] = expected_delivery

# (label, path, capability): the navigation shows an entry only to roles with its capability.
NAV = (
    ("Campaigns", "/console/campaigns", "marketing"),
    ("Coupons", "/console/coupons", "marketing"),
    ("Experiments", "/console/experiments", "experiments"),
    ("Models", "/console/models", "models"),
    ("Merchant review", "/console/merchants", "admin"),
    ("API keys", "/console/keys", "admin"),
    ("My shop", "/console/shop", "merchant"),
    ("Shipments", "/console/shop/orders", "merchant"),
    ("Keyword ads", "/console/keyword-campaigns", "merchant"),
)


def nav_for(session: ConsoleSession) -> list[tuple[str, str]]:
    return [(label, path) for label, path, capability in NAV if session.may(capability)]


async def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or an htmx fragment) with the session, its CSRF token and the navigation it may see."""
    session = await console_session(request, request.app.state.serving)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "principal": session.principal,
            "nav": (nav := nav_for(session)),
            # the entry the page is under: the longest matching path ("Shipments" under "My shop")
            "nav_current": max((h for _, h in nav if request.url.path.startswith(h)), key=len, default=None),
            "csrf": session.csrf,
            "csrf_field": CSRF_FIELD,
            "csrf_header": CSRF_HEADER,
            "htmx": HTMX,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
    for value in context.values():  # a form refused for a busy database: when to send it again
        if isinstance(value, Refusal) and value.retry_after:
            response.headers["Retry-After"] = str(value.retry_after)
    if getattr(request.state, "console_new_cookie", False):  # an anonymous browser's first page
        request.app.state.console_sessions.write(request, response, None, session.csrf)
    return response


def redirect(path: str, *ids: object) -> RedirectResponse:
    """After a successful POST: see the result with a GET (303), so a reload never repeats the action;
    `ids` are appended to `path` as segments."""
    return RedirectResponse("/".join([path, *map(segment, ids)]), status_code=303)


def past_the_end(request: Request, page) -> RedirectResponse | None:
    """Every console list's rule for an offset past its last item (a stale link, a typed address): the
    redirect to its last page, the address keeping its other parameters; it read "1251 of 60" over an
    empty table. None when the page has items to show, or is the first."""
    if page is None or page.offset == 0 or page.offset < page.total:
        return None
    last = (page.total - 1) // page.limit * page.limit if page.total else 0
    url = request.url.include_query_params(offset=last) if last else request.url.remove_query_params("offset")
    return redirect(f"{url.path}?{url.query}" if url.query else url.path)


def message_of(exc: Exception) -> str:
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, SchemaError):
        return "; ".join(
            field_name(e["loc"]) + plain(e["msg"]) if e["loc"] else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
    return str(exc)


def field_name(loc: tuple) -> str:
    """A schema error's field as its reader names it: ("variants", 1, "weight") is "Variant 2 weight"
    (it read "variants.1.weight")."""
    words: list[str] = []
    for part in loc:
        if isinstance(part, int) and words:
            words[-1] = f"{words[-1].removesuffix('s')} {part + 1}"
        else:
            words.append(str(part).replace("_", " "))
    name = " ".join(words)
    return name[:1].upper() + name[1:]


#: Pydantic's wording -> the console's: "quantity: Input should be greater than or equal to 0" read as
#: Python's; now "Quantity must be greater than or equal to 0".
PLAIN = (
    ("Input should be ", " must be "),
    ("String should have ", " must have "),
    ("Field required", " is required"),
    ("Value error, ", ": "),
)


def plain(message: str) -> str:
    """The message as it follows the field's name."""
    for theirs, ours in PLAIN:
        if message.startswith(theirs):
            return ours + message.removeprefix(theirs)
    return f": {message}"


@dataclass(frozen=True)
class Refusal:
    """A refused action as the page shows it: the status the API would have answered (403 / 404 from the
    router, the domain error's own, 422 for bad input, 503 for a busy or unreachable database) and its
    message (`str()` of it, as templates print it). Every console form answers with it, so a 403 or 409 is
    not shown as a 422; `render` sends its `retry_after` as the Retry-After header."""

    status_code: int
    message: str
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message


def refusal(exc: Exception) -> Refusal:
    if isinstance(exc, HTTPException):
        return Refusal(exc.status_code, str(exc.detail))
    if isinstance(exc, DomainError):
        return Refusal(status_for(exc), exc.message)
    return Refusal(422, message_of(exc))


async def refusal_page(request: Request, title: str, refused: Refusal) -> HTMLResponse:
    """The error page for a refused action, with the refusal's own status."""
    return await render(request, "error.html", status_code=refused.status_code, title=title, message=refused)


NOTHING_SAVED = "Nothing was saved"


async def attempt(
    request: Request, session: Session | None, action: Callable[[], T]
) -> tuple[T | None, Refusal | None]:
    """Run an action through the API's code, in the thread pool as the API's routes run: it waits on the
    database, and the console's routes are async (on the event loop, a page waiting on a slow database
    held every request of the process). A refusal (domain rule, HTTP error, bad input) rolls the
    request's transaction back and comes back for the page to show.

    An action (`session` given: the form's transaction) that meets a busy or unreachable database (a
    lock wait, SQLite's write lock, a lost connection, a timeout) is refused too, as the API answers it
    (`serving.errors.database_refusal`: 503 and Retry-After) after the same rollback, so nothing of it
    is kept and its form is shown again with what was typed (the session reads only from then on). Its
    writes are flushed here, so a busy database is met now, not at the commit after the page. It was
    the generic error page, and the typed form was lost. A read (`session` None) that fails so is the
    error page: it has nothing to keep, unless it draws a form's page (`FormRoute`, which reads what the
    form came to here: `refused_form`)."""
    if session is not None:
        refused_form(request, None)
    try:
        return await run_in_threadpool(_run, session, action), None
    except (DomainError, HTTPException, SchemaError, ValueError) as exc:
        if session is None:
            return None, refusal(exc)
        await run_in_threadpool(session.rollback)
        return None, refused_form(request, refusal(exc))
    except (DBAPIError, DatabaseTimeout) as exc:
        if session is None:
            raise
        await run_in_threadpool(session.rollback)
        state = request.app.state.serving
        # the page drawn again only reads: read-only (the API's read-only sessions' bind), so the writer
        # that held the lock (SQLite's is the whole database's) does not make it wait and fail in turn
        session.bind = state.read_only_sessions.kw["bind"]
        refused = database_refusal(state, request.method, request.url.path, exc)
        if refused is None:  # a bug, not the database's state: the crash page
            raise
        message = f"{NOTHING_SAVED}: {refused.detail}." if refused.status == 503 else refused.detail
        return None, refused_form(request, Refusal(refused.status, message, refused.retry_after))


def _run(session: Session | None, action: Callable[[], T]) -> T:
    result = action()
    if session is not None:
        session.flush()
    return result


def refused_form(request: Request, refused: Refusal | None) -> Refusal | None:
    """What this request's form came to (None: it went through), for `FormRoute` should the page drawn
    after it fail on the database: `attempt` records it, and the plan, which says what it kept."""
    request.state.form_refused = refused
    return refused


NOT_RUN = object()  # `form_refused` of a request whose form's action has not run


class KeptForm(Exception):
    """A form's answer drawn by `FormRoute`, raised so that the request's session, which ends after the
    route's handler (a "function" dependency), rolls the page's failed reads back instead of committing
    them as if the page had been answered; the console's handler answers with `page`."""

    def __init__(self, page: Response) -> None:
        super().__init__("form kept")
        self.page = page


class FormRoute(APIRoute):
    """The console's routes with forms. A form posted while the database is down (or busy) whose page
    cannot be drawn, because the page reads the database (the shop's products, the keys list, the
    merchant queue, a keyword campaign, a coupon, a campaign) before or after the form's action, is
    answered with the form alone, from the request's own values (`form_kept.html`): the refusal, 503 and
    its Retry-After, every value typed, sent again with one click; the rest of the page a note. It was
    the generic "Unavailable" page, the typed form lost. One rule for every form, whatever its page reads.

    A form a rule refused (422, 409...: nothing of it kept, `attempt` rolled it back) whose page, drawn
    again with the refusal, then fails on the database comes back so too, with the rule's refusal and
    its status (it was the generic page, refusal and input lost).

    "Nothing was saved" holds as the console's routes write only through `attempt`: before it ran, or
    after the database refused it, nothing of the form was kept; after it went through (a key created,
    then the list drawn with it fails) the error page stays, as it may have been. An htmx request keeps
    the generic answer too: only its fragment would be swapped, and the form it came from still holds the
    input."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except (DBAPIError, DatabaseTimeout) as exc:
                checked = getattr(request.state, "csrf_checked", False)  # the browser's own form
                if request.method != "POST" or not checked or request.headers.get("HX-Request"):
                    raise
                state = request.app.state.serving
                read = database_refusal(state, request.method, request.url.path, exc)
                if read is None or read.status != 503:  # a bug, or not the database's state
                    raise
                refused = getattr(request.state, "form_refused", NOT_RUN)
                if refused is NOT_RUN:  # refused before its action ran
                    refused = Refusal(503, f"{NOTHING_SAVED}: {read.detail}.", read.retry_after)
                elif refused is None:  # it went through: it may have been kept
                    raise
                raise KeptForm(await _kept_form(request, refused)) from exc

        return handler


@dataclass(frozen=True)
class KeptField:
    """One name of a kept form: how the console's own forms draw it (`kind`: "hidden", "checkbox",
    "textarea", "select", "text"), their label, the values sent under it, in order, and a select's
    options (value, label)."""

    name: str
    kind: str
    label: str
    values: list[str]
    options: tuple[tuple[str, str], ...] = ()


FIELD = re.compile(r"<(input|select|textarea|button)\b([^>]*)>")
LABEL = re.compile(r'<label for="([^"]+)">(.*?)</label>', re.S)
HINT = re.compile(r'<span class="hint">.*?</span>', re.S)
ATTR = re.compile(r'([\w-]+)="([^"]*)"')
SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.S)
LOOP = re.compile(r"\{%\s*for\s+[\w\s,]+?\s+in\s+(\w+)(\.items\(\))?\s*%\}.*?\{%\s*endfor\s*%\}", re.S)
OPTION = re.compile(r'<option value="([^"{]*)"[^>]*>([^<{]*)</option>')


def select_options(body: str) -> tuple[tuple[str, str], ...] | None:
    """A select's options from its template source: those written out, then those of each loop over a
    fixed list (`choices`). None when a loop's list is the page's own (read from the database)."""
    loops = [(name, items) for name, items in LOOP.findall(body)]
    if not all(name in templates.env.globals for name, _ in loops):
        return None
    options = [(value, " ".join(label.split())) for value, label in OPTION.findall(LOOP.sub("", body))]
    for name, _ in loops:
        listed = templates.env.globals[name]
        for item in listed.items() if isinstance(listed, dict) else listed:
            options.append(tuple(map(str, item)) if isinstance(item, tuple) else (str(item), str(item)))
    return tuple(options)


@functools.cache
def form_fields() -> dict[str, tuple[tuple | None, str | None]]:
    """The console's form fields as its templates draw them, read once from their source: a field's name
    (`match_{{ i }}` standing for `match_0`, `match_1`...) to its kind with a select's options
    (`select_options`; a select of the page's own options is a text box) and its label's text. A name
    the templates draw two ways (`status`: a select on one page, a button's value on another) has no kind
    here, a label naming a record (a product's title) no label: `_kept_form` infers them. Read after the
    console's modules are imported, which give the templates their fixed lists (`choices`)."""
    seen: dict[str, set[tuple[tuple, str | None]]] = {}
    for path in (HERE / "templates").glob("[!_]*.html"):
        if path.name == "form_kept.html":
            continue
        source = path.read_text()
        labels = {}
        for target, text in LABEL.findall(source):  # with its hint, and without
            texts = (text, HINT.sub("", text))
            texts = tuple(" ".join(re.sub(r"<[^>]*>", " ", t).split()) for t in texts)
            labels[target] = None if "{" in texts[0] or not texts[0] else texts
        options = {
            dict(ATTR.findall(attrs)).get("name"): select_options(body)
            for attrs, body in SELECT.findall(source)
        }
        for tag, attrs in FIELD.findall(source):
            a = dict(ATTR.findall(attrs))
            if "name" not in a or a["name"].startswith("{") or "{%" in a["name"]:
                continue
            kind = "hidden" if tag == "button" else tag if tag != "input" else a.get("type", "text")
            way = (kind, options.get(a["name"])) if kind == "select" else (kind, None)
            way = way if kind in ("hidden", "checkbox", "textarea") or way[1] else ("text", None)
            seen.setdefault(a["name"], set()).add((way, labels.get(a.get("id", ""))))
    fields = {}
    for name, ways in seen.items():
        kinds, texts = {k for k, _ in ways}, {t for _, t in ways}
        if len(texts) > 1 and None not in texts and len({t[1] for t in texts}) == 1:
            texts = {(texts.pop()[1],)}  # drawn with different hints: the label without them
        pattern = "".join(
            ".+" if part.startswith("{{") else re.escape(part) for part in re.split(r"(\{\{.*?\}\})", name)
        )
        fields[pattern] = (
            kinds.pop() if len(kinds) == 1 else None,
            texts.pop()[0] if len(texts) == 1 and None not in texts else None,
        )
    return fields


def kept_field(name: str, values: list[str]) -> KeptField:
    """A sent name as the kept form draws it: as the console's forms draw it (`form_fields`), else
    inferred from what was sent. A name sent more than once (a multi-select, a list of checkboxes) is
    a checkbox per value, all checked; "on" alone, a checked checkbox's value when it has none, a
    checkbox (so a text box in which "on" was typed is one too: checked, it sends the same); a value with
    a line break or over 80 characters a textarea; a select of a fixed list (`choices`) a select with
    the sent option selected, unless it was sent an option it does not offer. Labels not drawn as text
    by a template are derived from the name. Each way sends again exactly what was sent."""
    way, label = next((way for p, way in form_fields().items() if re.fullmatch(p, name)), (None, None))
    kind, options = way or (None, None)
    if kind == "select" and not set(values) <= {value for value, _ in options}:
        kind = None  # a value the select does not offer: sent again as it was sent
    if kind is None or (len(values) > 1 and kind != "hidden"):
        long = any("\n" in v or len(v) > 80 for v in values)
        kind = "checkbox" if len(values) > 1 or values == ["on"] else "textarea" if long else "text"
    if kind == "text" and any("\n" in v or "\r" in v for v in values):
        kind = "textarea"  # an input would drop its line breaks
    label = label or name.replace("_", " ").capitalize()
    return KeptField(name, kind, label, values, options if kind == "select" else ())


async def _kept_form(request: Request, refused: Refusal) -> HTMLResponse:
    """The refused form from what the request sent, posting to the address it was sent to (the raw one:
    an id with a `/` or `?` in it stays one segment)."""
    form = await request.form()
    sent: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if name != CSRF_FIELD and isinstance(value, str):
            sent.setdefault(name, []).append(value)
    raw = request.scope.get("raw_path")
    action = raw.decode("latin-1") if raw else quote(request.url.path)
    if request.url.query:
        action += f"?{request.url.query}"
    return await render(
        request, "form_kept.html", status_code=refused.status_code, title="Your form, as you sent it",
        refused=refused, fields=[kept_field(n, v) for n, v in sent.items()], action=action,
    )  # fmt: skip

"""Round 17: a hostile client against what changed on the day of round 16 (the /metrics allow-list, the
console's sessions through an outage, Idempotency-Key ends retried in the background, the one open
keyword campaign per product, the incremental ads counts, `demo-state.json`), HTTP/1.1 framing and the
command line's number options. Each test failed before its fix.

Tried and held, sent to `crosscart serve`'s protocols (h11 and httptools) on a running server, not
replayed here: a POST over the body limit by Content-Length whose body is a second, authenticated
request (one 413, the inner request never ran) and the same chunked; four pipelined requests (four
answers, in order); `Transfer-Encoding: identity` and two differing `Content-Length`s (the parser's 400);
3,000 headers and a 15 kB `Cookie` to the console (within the 16 kB header cap: answered as usual, more
is the 431 of serving/http.py); a fullwidth and a Japanese `Host` (unused: every redirect is relative, from
the path); an `Idempotency-Key` of fullwidth letters (400: printable ASCII only, so no look-alike keys).
Read in the code, held: `/metrics` behind a trusted proxy (the address believed is the rightmost
untrusted `X-Forwarded-For` entry, as uvicorn picks it; an entry with a port fails closed); a keyword
campaign's products (only set at creation, counted after `chosen_id`'s lock; paused campaigns count, an
ended one cannot restart); impressions and clicks (timed by the server, never by the client, so no
settled day's cached count can be written into); the kept form (drawn only after its CSRF check, never
for sign-in); `demo-state.json` (written only by the demo; unreadable, it is warned about once);
`UnsettledKeys` (an end reaches it only when the database refused it, so a client cannot fill it on its
own; at its bound an end is counted and dropped, its key in progress until it expires)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crosscart.cli import app as cli
from tests.resilience.conftest import fault_app, fault_settings, seeded_factory


def test_an_anonymous_address_of_any_length_keeps_its_idempotency_key(database_url, tmp_path):
    """An anonymous caller's Idempotency-Key was stored under `ip:` + its address as uvicorn gave it, in
    an 80-character column. Behind `CROSSCART_FORWARDED_ALLOW_IPS=*` (or a trusted proxy forwarding a
    trusted visitor) the address is the `X-Forwarded-For` entry the client wrote, any text: 78 characters
    or more made every keyed request a 500 on PostgreSQL (StringDataRightTruncation at the claim). The
    address is stored hashed, as a key is (`serving.idempotency._caller`)."""
    factory = seeded_factory(database_url)
    address = "f" * 120  # what uvicorn sets as the client from `X-Forwarded-For: fff...`
    app = fault_app(fault_settings(tmp_path), factory)
    application = {"name": "Nagoya Tea", "country": "JP", "licence_no": "L-17", "brands": ["Tea"]}
    headers = {"Idempotency-Key": "apply-once"}
    with TestClient(app, client=(address, 1), raise_server_exceptions=False) as client:
        first = client.post("/v1/merchants", json=application, headers=headers)
        again = client.post("/v1/merchants", json=application, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    factory.kw["bind"].dispose()


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ("experiment simulate --runs 1 --alpha nan", "alpha"),  # ran: "expected nan", exit 0
        ("experiment simulate --runs 1 --alpha 2", "alpha"),  # scipy's `confidence_level` message
        ("experiment simulate --runs 1 --looks 2 --alpha nan", "alpha"),  # ran, nothing ever rejected
        ("experiment power --std 1 --mde inf", "mde"),  # "cannot convert float NaN to integer"
        ("experiment power --std inf --mde 1", "std"),  # the same
    ],
)
def test_a_test_level_that_is_no_probability_is_refused(command, named, tmp_path, monkeypatch):
    """`crosscart experiment simulate` took any `--alpha`: `nan` ran every simulation and reported
    "expected nan" with exit 0, `2` ended in scipy's message about a `confidence_level`; `experiment
    power` took an infinite `--mde` or `--std` to "cannot convert float NaN to integer". Each is one line
    naming the option (`experiments.ab.power.check_levels`, the calculator's and the simulations' check)."""
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, command.split())
    assert result.exit_code == 2, result.output
    assert named in result.output and "NaN to integer" not in result.output, result.output
    assert "confidence_level" not in result.output


@pytest.mark.parametrize("weight", ["inf", "1e7"])
def test_a_variant_weight_is_bounded_on_the_command_line_as_in_the_api(weight, tmp_path, monkeypatch):
    """The API takes a variant weight in (0, 1e6], finite; `crosscart experiment create` took any
    positive float: `-v a=inf -v b=1` stored a draft experiment with an infinite weight (its split is
    inf / inf). The bound is the service's (`commerce.services.experiments.MAX_VARIANT_WEIGHT`), the
    schema's with it."""
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(cli, ["experiment", "create", "x", "-v", f"a={weight}", "-v", "b=1"])
    assert result.exit_code == 2, result.output
    assert "weight" in result.output


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ("campaign simulate-loop --budget 100 --rounds 1 --scale tiny --margin nan", "margin"),
        ("campaign simulate-loop --budget 100 --rounds 1 --scale tiny --explore-decay nan", "explore_decay"),
        ("db expire-orders --ttl-minutes nan", "ttl-minutes"),
        ("db expire-orders --ttl-minutes inf", "ttl-minutes"),
    ],
)
def test_a_number_option_that_is_no_number_is_one_line(command, named, tmp_path, monkeypatch):
    """`campaign simulate-loop --margin nan` generated a marketplace, learnt a planner, then ended in
    a ValueError traceback from the measurement (`--explore-decay nan` ran); `db expire-orders
    --ttl-minutes nan` (or `inf`, past click's `min=0.01`) ended in "cannot convert float NaN to integer"
    from `timedelta`. Each is one line naming the option, before any work (`LoopSettings`,
    `crosscart.cli.db.expire_orders`)."""
    monkeypatch.setenv("CROSSCART_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, command.split())
    assert result.exit_code == 2, (result.output, result.exception)
    assert named in result.output

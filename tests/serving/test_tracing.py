"""OpenTelemetry: with an exporter, a request yields its server span, its SQL spans and the model scoring
span, all in one trace; without an endpoint, tracing is off."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from serving.tracing import setup_tracing
from tests.serving.conftest import auth


def test_request_database_and_scoring_spans_share_one_trace(make_client, keys):
    exporter = InMemorySpanExporter()
    client = make_client(span_exporter=exporter)
    assert client.get("/v1/shoppers/s1/orders", headers=auth(keys["shopper"])).status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert server and server[-1].attributes.get("http.route", "").endswith("/shoppers/{shopper_id}/orders")
    sql = [s for s in spans if s.attributes.get("db.system") or s.attributes.get("db.system.name")]
    assert sql, [s.name for s in spans]
    in_request = [s for s in sql if s.context.trace_id == server[-1].context.trace_id]
    assert any("FROM orders" in s.attributes["db.statement"] for s in in_request)

    exporter.clear()
    r = client.get("/v1/shoppers/s1/recommendations", headers=auth(keys["storefront"]))
    assert r.status_code == 200
    scoring = [s for s in exporter.get_finished_spans() if s.name == "model.score"]
    assert scoring and scoring[0].attributes["model"] == "tiny"


def test_tracing_is_off_without_an_endpoint():
    assert setup_tracing(app=None, engine=None, endpoint="") is None

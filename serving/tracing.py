"""OpenTelemetry traces for the API: a span per request (FastAPI), per SQL statement and per
model scoring (`serving.recommend`), exported over OTLP/HTTP when `CROSSCART_OTEL_ENDPOINT` is set, and
entirely off (no provider, no-op spans) otherwise."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

SERVICE_NAME = "crosscart-api"


def setup_tracing(app: FastAPI, engine: Engine, endpoint: str, exporter=None):
    """Instrument `app` and `engine`; returns the tracer provider, or None when tracing is off. `exporter`
    replaces the OTLP exporter (tests pass an in-memory one). The caller shuts the provider down when the
    app stops (exporting what is queued, ending the exporter's thread): not at process exit, where
    OpenTelemetry's own hook kept every app's provider, exporter and queued spans alive until then."""
    if not endpoint and exporter is None:
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from serving.recommend import trace_scoring

    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME}), shutdown_on_exit=False
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
        )
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # for libraries' own spans; only the first app of a process sets it
    trace_scoring(provider.get_tracer("crosscart.serving"))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="health,ready,metrics")
    trace_statements(engine, provider.get_tracer("crosscart.sql"))
    return provider


def trace_statements(engine: Engine, tracer) -> None:
    """A client span per SQL statement (its text, never its parameters). Hand-written on SQLAlchemy's
    cursor events because opentelemetry-instrumentation-sqlalchemy supports SQLAlchemy < 2.1 only and
    needs the asyncio extra (greenlet)."""
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from sqlalchemy import event

    system = engine.dialect.name

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = tracer.start_span(
            f"{operation} {system}",
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "db.statement": statement[:2000], "db.operation": operation},
        )
        conn.info.setdefault("crosscart.spans", []).append(span)

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):
        spans = conn.info.get("crosscart.spans")
        if spans:
            spans.pop().end()

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        spans = context.connection.info.get("crosscart.spans") if context.connection is not None else None
        if spans:
            span = spans.pop()
            span.record_exception(context.original_exception)
            span.set_status(Status(StatusCode.ERROR))
            span.end()

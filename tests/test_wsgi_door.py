"""The WSGI front door in-process: one SERVER span, the policy, enrich-or-make, streaming close."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional
from wsgiref.util import setup_testing_defaults

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otel_user_tracking import TagPolicy, UserTrackingWSGIMiddleware, capture_exception, set_user
from otel_user_tracking.analytics.conversion import convert_span
from otel_user_tracking.config import get_config

App = Callable[[dict[str, Any], Callable[..., Any]], Any]


def environ(path: str = "/items/7", query: str = "", **extra: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn makes it, from 10.1.2.3, with ``extra`` (``HTTP_*``) headers."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "RAW_URI": path + ("?" + query if query else ""),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.1.2.3",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "shop.example",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
        **extra,
    }
    setup_testing_defaults(env)
    return env


def call(app: App, env: Optional[dict[str, Any]] = None) -> tuple[str, bytes]:
    """Run one request as a server does: start_response, iterate, close."""
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    result = app(env or environ(), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen[0], body


def hello(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    set_user(id="u-42", email="ada@example.com")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


def test_one_server_span_with_the_user_and_the_request_facts(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A request through the door makes one SERVER span named like contrib's, with the user and our facts."""
    app = UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider)
    assert call(app) == ("200 OK", b"hello")
    (span,) = server_spans(span_exporter)
    assert span.name == "GET /items/7"
    attributes = dict(span.attributes or {})
    assert attributes["user.id"] == "u-42"
    assert attributes["http.status_code"] == 200
    assert attributes["user_tracking.request_type"] == "http"
    assert attributes["user_tracking.host"] == "shop.example"
    assert "user_tracking.visitor_id" in attributes
    assert span_exporter.get_finished_spans() == (span,)


def test_the_policy_applies_to_every_attribute(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The client address, the forwarded chain and sensitive query values never reach the span as sent."""
    app = UserTrackingWSGIMiddleware(
        hello, tracer_provider=tracer_provider, tag_policy=TagPolicy(email="drop")
    )
    env = environ(
        query="q=shoes&token=s3cr3t",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
        HTTP_REFERER="https://a.example/?api_key=k1",
    )
    call(app, env)
    (span,) = server_spans(span_exporter)
    text = repr(dict(span.attributes or {}))
    for secret in ("10.1.2.3", "203.0.113.9", "s3cr3t", "k1", "ada@example.com"):
        assert secret not in text, secret
    assert span.attributes["http.target"] == "/items/7?q=shoes&token=REDACTED"


def test_a_server_span_made_outside_is_enriched_not_doubled(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """Under contrib's WSGI middleware the door tags its SERVER span and makes none of its own."""
    app = OpenTelemetryMiddleware(
        UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider), tracer_provider=tracer_provider
    )
    call(app)
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 1
    (span,) = spans
    assert span.kind is SpanKind.SERVER
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.wsgi"
    assert span.attributes["user.id"] == "u-42"
    assert "10.1.2.3" not in repr(dict(span.attributes or {}))


def streaming(closed: list[str], tracer: trace.Tracer) -> App:
    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            try:
                yield b"a"
                set_user(id="late-user")  # user code running while the body streams
                with tracer.start_as_current_span("render"):
                    pass
                yield b"b"
            finally:
                closed.append("closed")

        return body()

    return app


def test_a_streamed_body_runs_in_the_request_and_ends_it_when_sent(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The body's code runs with the request current (user, child spans); the span ends once the
    body is exhausted, and the server's close() still closes the app's iterable."""
    closed: list[str] = []
    app = UserTrackingWSGIMiddleware(
        streaming(closed, tracer_provider.get_tracer("app")), tracer_provider=tracer_provider
    )
    result = app(environ(), lambda status, headers, exc_info=None: None)
    chunks = iter(result)
    assert next(chunks) == b"a"
    assert server_spans(span_exporter) == []  # still streaming
    assert not trace.get_current_span().is_recording()  # nothing attached between two chunks
    assert list(chunks) == [b"b"]
    (span,) = server_spans(span_exporter)
    assert span.attributes["user.id"] == "late-user"
    render = next(item for item in span_exporter.get_finished_spans() if item.name == "render")
    assert render.parent is not None and render.parent.span_id == span.context.span_id
    result.close()
    assert closed == ["closed"]
    assert len(server_spans(span_exporter)) == 1


def test_a_response_closed_early_ends_the_request_and_closes_the_app(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A client gone after the first chunk: the server's close() ends the span and runs the app's close."""
    closed: list[str] = []
    app = UserTrackingWSGIMiddleware(
        streaming(closed, tracer_provider.get_tracer("app")), tracer_provider=tracer_provider
    )
    result = app(environ(), lambda status, headers, exc_info=None: None)
    assert next(iter(result)) == b"a"
    result.close()
    assert closed == ["closed"]
    (span,) = server_spans(span_exporter)
    assert span.attributes["http.status_code"] == 200


def test_a_response_never_closed_leaves_nothing_attached(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """An unread, unclosed response (a test client's) leaves no span current; the next request has its own."""
    app = UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider)
    app(environ(path="/first"), lambda status, headers, exc_info=None: None)  # never iterated nor closed
    assert not trace.get_current_span().is_recording()
    call(app, environ(path="/second"))
    (span,) = server_spans(span_exporter)
    assert span.name == "GET /second"


def failing(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    raise KeyError("boom")


def test_an_escaping_exception_is_one_event_and_an_analytics_error(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """An exception that escapes the app is re-raised untouched and recorded once, escaped."""
    app = UserTrackingWSGIMiddleware(failing, tracer_provider=tracer_provider)
    with pytest.raises(KeyError, match="boom"):
        call(app)
    (span,) = server_spans(span_exporter)
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1
    assert events[0].attributes["exception.escaped"] in (True, "True")
    kinds = [event.type for event in convert_span(span, get_config())]
    assert kinds == ["pageview", "error"]


def test_a_handled_exception_rendered_as_500_is_one_event(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """An exception the app answers with a 500 itself, reported by capture_exception, is one event."""

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            raise ValueError("db down")
        except ValueError as exc:
            capture_exception(exc)
        start_response("500 Internal Server Error", [])
        return [b"sorry"]

    call(UserTrackingWSGIMiddleware(app, tracer_provider=tracer_provider))
    (span,) = server_spans(span_exporter)
    assert [event.name for event in span.events] == ["exception"]
    assert span.status.status_code is trace.StatusCode.ERROR


def test_the_conversion_reads_the_same_fields_as_from_the_asgi_door(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The pageview of a WSGI request has its method, path, query, status, host and user."""
    app = UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider)
    call(app, environ(path="/cart", query="utm_source=news&page=2"))
    (span,) = server_spans(span_exporter)
    (pageview,) = convert_span(span, get_config())
    assert (pageview.method, pageview.path, pageview.query, pageview.status_code) == (
        "GET",
        "/cart",
        "utm_source=news&page=2",
        200,
    )
    assert (pageview.host, pageview.user_id, pageview.utm_source) == ("shop.example", "u-42", "news")
    assert pageview.user_agent.startswith("Mozilla/5.0")


def test_per_app_options_apply_to_that_app_only(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """``excluded_urls`` given to one door leaves its requests untracked, another app's tracked."""
    skipped = UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider, excluded_urls=("/health",))
    tracked = UserTrackingWSGIMiddleware(hello, tracer_provider=tracer_provider)
    call(skipped, environ(path="/health"))
    call(tracked, environ(path="/health"))
    assert len(server_spans(span_exporter)) == 1
    with pytest.raises(ValueError, match="excluded_urls"):
        UserTrackingWSGIMiddleware(hello, excluded_urls=("(",))


def test_child_spans_get_the_user_id(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A span the app starts after set_user carries user.id, through the existing processor."""
    tracer = tracer_provider.get_tracer("app")

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        set_user(id="u-7")
        with tracer.start_as_current_span("query"):
            pass
        start_response("200 OK", [])
        return [b""]

    call(UserTrackingWSGIMiddleware(app, tracer_provider=tracer_provider))
    child = next(span for span in span_exporter.get_finished_spans() if span.name == "query")
    assert child.attributes["user.id"] == "u-7"
    assert child.parent is not None


def test_captured_headers_and_metrics_follow_the_policy(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The standard header-capture variables work as on contrib's span, every captured value under
    the policy, and the request-duration metric carries the route."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-request-id,x-forwarded-for,referer"
    )
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "x-debug")
    reader = InMemoryMetricReader()

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        from otel_user_tracking.request.framework import report_route

        report_route("/items/{id}")
        start_response("200 OK", [("X-Debug", "served for 10.1.2.3")])
        return [b"ok"]

    door = UserTrackingWSGIMiddleware(
        app, tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    env = environ(
        HTTP_X_REQUEST_ID="req-1",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
        HTTP_REFERER="https://a.example/?token=s",
    )
    call(door, env)
    (span,) = server_spans(span_exporter)
    attributes = dict(span.attributes or {})
    assert attributes["http.request.header.x_request_id"] == ("req-1",)
    assert attributes["http.request.header.referer"] == ("https://a.example/?token=REDACTED",)
    assert attributes["http.response.header.x_debug"] == ("served for REDACTED",)
    assert not [key for key in attributes if "forwarded" in key]
    assert span.name == "GET /items/{id}"
    metrics = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    # The old convention's (the default mode's) duration, which names the route http.target.
    duration = next(metric for metric in metrics if metric.name == "http.server.duration")
    (point,) = duration.data.data_points
    assert point.attributes["http.target"] == "/items/{id}" and point.count == 1

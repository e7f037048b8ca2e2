"""The server span's OpenTelemetry conventions as contrib's ASGI middleware sets them (issue 19),
where contrib's own suite (tests/test_contrib_suites.py) cannot see them: the one-span design
changes how those tests count spans.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    get_global_response_propagator,
    set_global_response_propagator,
)
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.background import BackgroundTask, BackgroundTasks
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from otel_user_tracking import TagPolicy, UserTrackingInstrumentor, UserTrackingMiddleware, set_user, track

from ._apps import get, instrumented, new_tracing
from ._asgi import http_scope, ok_app, serve, status_and_body
from ._cli_exclusion import assert_health_excluded_under_cli
from ._otlp_receiver import OTLPReceiver


@pytest.fixture(autouse=True)
def _semconv_mode(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` from a ``semconv`` parameter (default: old names), read afresh."""
    callspec = getattr(request.node, "callspec", None)
    mode = callspec.params.get("semconv", "default") if callspec else "default"
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", mode)
    monkeypatch.setattr(_OpenTelemetrySemanticConventionStability, "_initialized", False)


def _server_span(exporter: InMemorySpanExporter) -> Any:
    (span,) = exporter.get_finished_spans()
    return span


@pytest.mark.parametrize(
    ("semconv", "key"), [("default", "http.host"), ("http", "server.address"), ("http/dup", "server.address")]
)
def test_server_address_equal_to_the_client_address_stays_under_ip_keep(
    semconv: str, key: str, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """D1: with ip="keep", a server address equal to the client's (loopback) is kept, as contrib keeps it."""
    app = UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider, tag_policy=TagPolicy(ip="keep"))
    serve(app, http_scope(client=("127.0.0.1", 50000), server=("127.0.0.1", 80)))
    attributes = _server_span(span_exporter).attributes
    assert attributes[key] == "127.0.0.1"
    assert attributes["client.address"] == "127.0.0.1"
    if semconv == "default":
        assert attributes["net.peer.ip"] == "127.0.0.1"


def test_server_address_equal_to_the_client_address_goes_when_the_policy_drops_addresses(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """Under the default policy (ip="drop") no attribute carries the client address, whatever its name."""
    app = UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider)
    serve(app, http_scope(client=("127.0.0.1", 50000), server=("127.0.0.1", 80)))
    assert "127.0.0.1" not in _server_span(span_exporter).attributes.values()


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[dict[str, Any]]]:
    """Each metric's data points' attributes, by metric name."""
    found: dict[str, list[dict[str, Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scoped in resource.scope_metrics:
            for metric in scoped.metrics:
                found.setdefault(metric.name, []).extend(dict(p.attributes) for p in metric.data.data_points)
    return found


async def _sized_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("semconv", ["default", "http", "http/dup"])
def test_metrics_are_contribs_in_every_semconv_mode(semconv: str) -> None:
    """D7: the same metrics, data points and attributes as contrib's middleware records, per mode."""
    scope = http_scope("/items", headers=[(b"host", b"shop.example"), (b"content-length", b"5")])
    points = []
    for make in (
        lambda app, meters: OpenTelemetryMiddleware(
            app, tracer_provider=TracerProvider(), meter_provider=meters
        ),
        lambda app, meters: UserTrackingMiddleware(
            app,
            tracer_provider=TracerProvider(),
            meter_provider=meters,
            tag_policy=TagPolicy(ip="keep"),
            scrub_query_keys=frozenset(),
        ),
    ):
        reader = InMemoryMetricReader()
        serve(make(_sized_app, MeterProvider([reader])), scope)
        points.append(_metric_points(reader))
    contrib, ours = points
    assert ours == contrib
    expected = {"default": "http.server.duration", "http": "http.server.request.duration"}
    assert expected.get(semconv, "http.server.duration") in ours


def test_metric_attributes_obey_the_policy(tracer_provider: TracerProvider) -> None:
    """D7: under the default policy no metric attribute carries the client address (here the server's too)."""
    reader = InMemoryMetricReader()
    app = UserTrackingMiddleware(
        ok_app, tracer_provider=tracer_provider, meter_provider=MeterProvider([reader])
    )
    serve(app, http_scope(client=("127.0.0.1", 50000), server=("127.0.0.1", 80)))
    points = _metric_points(reader)
    assert "http.server.duration" in points
    assert not [p for found in points.values() for p in found if "127.0.0.1" in map(str, p.values())]


def test_websocket_span_has_status_200_and_its_accept_headers_captured(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """D2, D3: a WebSocket that sends gets status 200, and ``websocket.accept``'s headers are captured."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "x-served-by")

    async def socket(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-served-by", b"edge-1")]})
        await send({"type": "websocket.send", "text": "hello"})
        await receive()

    messages = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        pass

    app = UserTrackingMiddleware(socket, tracer_provider=tracer_provider)
    scope = {**http_scope("/ws"), "type": "websocket", "scheme": "ws"}
    asyncio.run(app(scope, receive, send))
    attributes = _server_span(span_exporter).attributes
    assert attributes["http.status_code"] == 200
    assert tuple(attributes["http.response.header.x_served_by"]) == ("edge-1",)


def test_span_ends_at_the_last_body_not_after_background_tasks(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """D4: Starlette's BackgroundTasks run after the span ended: their time is not the request's."""
    ended_before_the_task: list[bool] = []

    async def task() -> None:
        ended_before_the_task.append(len(span_exporter.get_finished_spans()) == 1)

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTasks([BackgroundTask(task)]))

    app = UserTrackingMiddleware(Starlette(routes=[Route("/", endpoint)]), tracer_provider=tracer_provider)
    serve(app, http_scope("/"))
    assert ended_before_the_task == [True]
    assert _server_span(span_exporter).attributes["http.status_code"] == 200


def test_suppressed_http_instrumentation_gets_no_span_and_no_enrichment(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """D5: under ``suppress_http_instrumentation()`` ours neither makes a span nor tags the current one."""
    app = UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider)
    outer = tracer_provider.get_tracer("test").start_span("outer", kind=SpanKind.SERVER)
    with trace.use_span(outer, end_on_exit=True), suppress_http_instrumentation():
        serve(app, http_scope("/"))
    (span,) = span_exporter.get_finished_spans()
    assert span.name == "outer"
    assert not [key for key in span.attributes if key.startswith(("user", "http."))]


def test_response_propagator_headers_on_http_responses(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """D6: the global response propagator (``traceresponse``) writes its headers into our responses."""
    previous = get_global_response_propagator()
    set_global_response_propagator(TraceResponsePropagator())
    try:
        sent = serve(UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider), http_scope("/"))
    finally:
        set_global_response_propagator(previous)
    context = _server_span(span_exporter).context
    headers = dict(sent[0]["headers"])
    assert (
        headers[b"traceresponse"]
        == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()
    )
    assert headers[b"access-control-expose-headers"] == b"traceresponse"


def test_unhandled_exception_status_names_type_and_message(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """An exception that escapes with no response sets the status description ``ValueError: boom``."""

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        serve(UserTrackingMiddleware(failing, tracer_provider=tracer_provider), http_scope("/"))
    status = _server_span(span_exporter).status
    assert (status.status_code, status.description) == (StatusCode.ERROR, "ValueError: boom")


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_PYTHON_EXCLUDED_URLS",
        "OTEL_PYTHON_ASGI_EXCLUDED_URLS",
        "OTEL_PYTHON_STARLETTE_EXCLUDED_URLS",
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
    ],
)
def test_urls_opentelemetry_excludes_get_no_span(
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """Each excluded-URL variable of contrib's instrumentations: a matching request gets no span."""
    monkeypatch.setenv(variable, "health,/metrics$")
    app = UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider)
    for path in ("/health", "/api/metrics", "/items"):
        serve(app, http_scope(path))
    assert [span.name for span in span_exporter.get_finished_spans()] == ["GET /items"]


def test_urls_opentelemetry_excludes_stay_excluded_beside_our_own_list(
    monkeypatch: pytest.MonkeyPatch, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """An explicit ``excluded_urls`` adds to OpenTelemetry's variables; it does not replace them."""
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "health")
    app = UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider, excluded_urls=["admin"])
    for path in ("/health", "/admin", "/items"):
        serve(app, http_scope(path))
    assert [span.name for span in span_exporter.get_finished_spans()] == ["GET /items"]


class _Calls:
    """Hooks that record how they were called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, Optional[str]]] = []

    def server_request_hook(self, span: Any, scope: Any) -> None:
        self.calls.append(("server_request", span, scope.get("path"), None))

    def client_request_hook(self, span: Any, scope: Any, message: Any) -> None:
        self.calls.append(("client_request", span, scope.get("path"), message["type"]))

    def client_response_hook(self, span: Any, scope: Any, message: Any) -> None:
        self.calls.append(("client_response", span, scope.get("path"), message["type"]))

    def hooks(self) -> dict[str, Any]:
        return {f"{kind}_hook": getattr(self, f"{kind}_hook") for kind in _HOOKS}


_HOOKS = ("server_request", "client_request", "client_response")


async def _reading_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await ok_app(scope, receive, send)


def test_hooks_are_called_with_the_span_the_scope_and_each_message(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The three contrib hooks: at the start, per received and per sent message, with the server span."""
    recorder = _Calls()
    app = UserTrackingMiddleware(_reading_app, tracer_provider=tracer_provider, **recorder.hooks())
    serve(app, http_scope("/items"))
    span = _server_span(span_exporter)
    assert [(kind, path, message) for kind, _, path, message in recorder.calls] == [
        ("server_request", "/items", None),
        ("client_request", "/items", "http.request"),
        ("client_response", "/items", "http.response.start"),
        ("client_response", "/items", "http.response.body"),
    ]
    assert {called.get_span_context().span_id for _, called, _, _ in recorder.calls} == {span.context.span_id}


def test_instrument_takes_the_hooks(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """``UserTrackingInstrumentor().instrument(server_request_hook=...)`` hooks every app's requests."""
    recorder = _Calls()

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    instrumentor = UserTrackingInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, analytics=False, **recorder.hooks())
    try:
        serve(Starlette(routes=[Route("/items", endpoint)]), http_scope("/items"))
    finally:
        instrumentor.uninstrument()
    assert [kind for kind, *_ in recorder.calls] == ["server_request", "client_response", "client_response"]
    assert _server_span(span_exporter).name == "GET /items"


@pytest.mark.parametrize("hook", _HOOKS)
def test_a_raising_hook_never_fails_the_request(
    hook: str, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """A hook that raises is recorded on the span as an exception; the response is untouched."""

    def failing(*_: Any) -> None:
        raise RuntimeError(f"{hook} hook failed")

    app = UserTrackingMiddleware(_reading_app, tracer_provider=tracer_provider, **{f"{hook}_hook": failing})
    sent = serve(app, http_scope("/"))
    assert status_and_body(sent) == (200, b"ok")
    span = _server_span(span_exporter)
    messages = {event.attributes["exception.message"] for event in span.events if event.name == "exception"}
    assert messages == {f"{hook} hook failed"}


def test_a_hook_that_is_not_callable_is_refused_at_construction() -> None:
    """Explicit bad configuration fails at start-up with the fix in the message."""
    with pytest.raises(ValueError, match="server_request_hook must be a callable"):
        UserTrackingMiddleware(ok_app, server_request_hook="log")


CLI_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.get("/items")
def items() -> list:
    return []
"""


def test_cli_fastapi_excluded_url_gets_no_span_and_no_pageview(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    """Under ``opentelemetry-instrument``, OTEL_PYTHON_FASTAPI_EXCLUDED_URLS=health: no span, no pageview."""
    assert_health_excluded_under_cli(
        tmp_path, otlp_receiver, CLI_APP, OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="health"
    )


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_static_files_mount_is_named_as_fastapi_names_it(framework: str, tmp_path: Path) -> None:
    """``app.mount("/static", StaticFiles(...))``: ``GET /static/{path}``, not ``/static/static/{path}``."""
    (tmp_path / "a.txt").write_text("hi")
    tracing = new_tracing()
    with instrumented(tracing):
        if framework == "fastapi":
            app: Any = FastAPI()
            app.mount("/static", StaticFiles(directory=tmp_path), name="static")
        else:
            app = Starlette(routes=[Mount("/static", StaticFiles(directory=tmp_path))])
        assert get(app, "/static/a.txt").status_code == 200
    (span,) = tracing.server_spans()
    assert (span.name, span.attributes["http.route"]) == ("GET /static/{path}", "/static/{path}")


async def _logged_in_app(scope: Any, receive: Any, send: Any) -> None:
    set_user(id="user-42", email="jane@example.com")
    await ok_app(scope, receive, send)


_CRAWLER = [
    (b"user-agent", b"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (b"x-session-id", b"s-1"),
]
_REGISTERED = ("session.id", "enduser.pseudo.id", "user_agent.synthetic.type", "enduser.id")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_registered_names_beside_ours_under_the_switch(
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """``registered_names`` adds session.id, enduser.pseudo.id, user_agent.synthetic.type and
    enduser.id (in the policy's form) beside today's names, which stay."""
    options: dict[str, Any] = {"tag_policy": TagPolicy(id="hash", hash_key="names-test-key-3f9a1c")}
    if how == "option":
        options["registered_names"] = True
    else:
        monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_REGISTERED_NAMES", "true")
    app = UserTrackingMiddleware(_logged_in_app, tracer_provider=tracer_provider, **options)
    serve(app, http_scope("/", headers=_CRAWLER))
    attributes = _server_span(span_exporter).attributes
    assert attributes["session.id"] == attributes["user_tracking.session_id"] == "s-1"
    assert attributes["enduser.pseudo.id"] == attributes["user_tracking.visitor_id"]
    assert attributes["user_agent.synthetic.type"] == "bot" and attributes["user_tracking.bot"] is True
    assert attributes["enduser.id"] == attributes["user.id"] != "user-42"


def test_registered_names_are_off_by_default(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """Without the switch the span keeps today's names only."""
    serve(
        UserTrackingMiddleware(_logged_in_app, tracer_provider=tracer_provider),
        http_scope("/", headers=_CRAWLER),
    )
    attributes = _server_span(span_exporter).attributes
    assert [key for key in _REGISTERED if key in attributes] == []
    assert attributes["user.id"] == "user-42"


def test_background_task_after_the_response_tags_nothing_and_logs_nothing(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """set_user()/track() in a BackgroundTask (the span has ended) do nothing, without the SDK's warnings."""

    async def task() -> None:
        set_user(id="late")
        track("LATE_EVENT")

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(task))

    app = UserTrackingMiddleware(Starlette(routes=[Route("/", endpoint)]), tracer_provider=tracer_provider)
    with caplog.at_level("WARNING"):
        serve(app, http_scope("/"))
    span = _server_span(span_exporter)
    assert "user.id" not in span.attributes and list(span.events) == []
    assert [record.getMessage() for record in caplog.records] == []

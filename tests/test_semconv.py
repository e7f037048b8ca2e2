"""The server span's HTTP attributes, name and status equal the contrib ASGI middleware's.

``request/semconv.py`` computes them without the contrib helpers for speed; these tests hold it
to the installed contrib release on generated requests in every semconv mode (the version
matrix runs them on the oldest and the newest supported releases), and check that it stands
down when the contrib functions disagree with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.instrumentation import asgi as contrib
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util.http import sanitize_method

from otel_user_tracking import TagPolicy, UserTrackingMiddleware
from otel_user_tracking.attributes import CLIENT_ADDRESS_KEYS
from otel_user_tracking.request import semconv
from otel_user_tracking.request.semconv import HttpSemconv, _outcome
from otel_user_tracking.request.server_span import _well_formed, _well_formed_headers

from ._asgi import http_scope, ok_app, serve

MODES = [_StabilityMode.DEFAULT, _StabilityMode.HTTP, _StabilityMode.HTTP_DUP]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

header_names = st.one_of(
    st.sampled_from([b"host", b"user-agent", b"Host", b"USER-AGENT", b"accept", b"traceparent"]),
    st.binary(max_size=12),
)
header_values = st.one_of(
    st.sampled_from(
        [b"example.com", b"a:b@example.com:8080", b"", b"Googlebot/2.1", b"Mozilla/5.0 Chrome/126", b"\x80\\"]
    ),
    st.binary(max_size=40),
    st.text(max_size=30).map(str.encode),
)
scopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["http", "websocket"]),
        "headers": st.lists(st.tuples(header_names, header_values), max_size=6),
    },
    optional={
        "http_version": st.sampled_from(["1.0", "1.1", "2", ""]),
        "method": st.one_of(
            st.sampled_from(["GET", "post", " PUT ", "PURGE", "QUERY", ""]), st.text(max_size=8)
        ),
        "scheme": st.sampled_from(["http", "https", "ws", ""]),
        "path": st.one_of(st.sampled_from(["/", "/users/7", "/a b/?#", ""]), st.text(max_size=20)),
        "query_string": st.one_of(
            st.sampled_from([b"", b"q=caf%C3%A9+x", b"Signature=abc&AWSAccessKeyId=k", b"a=1#f"]),
            st.binary(max_size=20),
        ),
        "server": st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["127.0.0.1", "::1", "example.com", ""]), st.sampled_from([80, 443, 8000, 0])
            ),
        ),
        "client": st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["10.0.0.9", "::1", ""]), st.one_of(st.integers(0, 65535), st.just("x"))
            ),
        ),
    },
)


def _as_the_span_gets_it(function: Any, scope: dict[str, Any], *args: Any) -> Any:
    """The outcome the span maker acts on: a request the function rejects is retried well-formed."""
    outcome = _outcome(function, scope, *args)
    if outcome in (UnicodeDecodeError, IndexError, TypeError, ValueError):
        return _outcome(function, _well_formed(scope), *args)
    return outcome


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value or "default")
def test_the_fast_path_proves_itself_on_the_installed_contrib_release(mode: Any) -> None:
    """Every probe agrees, so the fast path is in use (a failure here means a contrib change)."""
    assert HttpSemconv(mode).fast


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value or "default")
@SETTINGS
@given(scope=scopes)
@example(scope={"type": "http", "headers": [(b"host", b"h"), (b"host", b"i")], "path": "/x"})
@example(scope={"type": "http", "headers": [(b"user-agent", b"\xff")], "path": "/x"})
def test_request_attributes_and_name_equal_the_contrib_functions(mode: Any, scope: dict[str, Any]) -> None:
    """Same dict as collect_request_attributes, same name as get_default_span_details.

    Where the contrib function rejects a request (undecodable header bytes), the span maker
    retries with a well-formed copy; the fast path may take the request as it is, and must
    then give what the contrib function gives for that copy.
    """
    fast = HttpSemconv(mode)
    ours = _as_the_span_gets_it(fast.request_attributes, scope)
    expected = _outcome(contrib.collect_request_attributes, scope, mode)
    if isinstance(expected, dict):
        assert ours == expected
    else:  # the fast path reads only the headers it needs: bad bytes elsewhere do not stop it
        readable_headers = {**scope, "headers": _well_formed_headers(scope["headers"])}
        assert ours in (
            _as_the_span_gets_it(contrib.collect_request_attributes, readable_headers, mode),
            _outcome(contrib.collect_request_attributes, _well_formed(scope), mode),
        )
    expected_name = _outcome(lambda s: contrib.get_default_span_details(s)[0], scope)
    assert _outcome(fast.span_name, scope) == expected_name


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value or "default")
@pytest.mark.parametrize("status", [200, 302, 404, 499, 500, 503, 99, 600])
def test_status_equals_set_status_code(mode: Any, status: int) -> None:
    """Attributes and span status after our set_status equal the contrib set_status_code's."""
    tracer = TracerProvider().get_tracer("test")
    ours, theirs = tracer.start_span("ours"), tracer.start_span("theirs")
    for span in (ours, theirs):
        span.set_status(StatusCode.ERROR)  # the contrib helper overwrites an earlier status
    HttpSemconv(mode).set_status(ours, status)
    contrib.set_status_code(theirs, status, None, mode)
    assert dict(ours.attributes or {}) == dict(theirs.attributes or {})
    assert ours.status.status_code == theirs.status.status_code


def test_a_contrib_release_that_disagrees_makes_every_span_the_contrib_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the installed helpers compute something the fast path does not, it stands down."""
    real = contrib.collect_request_attributes

    def changed(scope: Any, mode: Any = _StabilityMode.DEFAULT) -> dict[str, Any]:
        return {**real(scope, mode), "http.new_in_this_release": "yes"}

    monkeypatch.setattr(semconv.contrib, "collect_request_attributes", changed)
    fast = HttpSemconv(_StabilityMode.DEFAULT)
    assert not fast.fast
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "server": ("h", 80)}
    assert fast.request_attributes(scope)["http.new_in_this_release"] == "yes"


def _one_span(wrap: Any, scope: dict[str, Any], under: Any = None) -> Any:
    """The span a middleware made for one request (run under the span ``under``, if given)."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = wrap(ok_app, provider)
    if under is None:
        serve(app, scope)
    else:
        with trace.use_span(under):
            serve(app, scope)
    (span,) = [span for span in exporter.get_finished_spans() if span.name != "outer"]
    return span


OURS = lambda app, provider: UserTrackingMiddleware(app, tracer_provider=provider, tag_policy=KEEP_ALL)  # noqa: E731
CONTRIB = lambda app, provider: OpenTelemetryMiddleware(  # noqa: E731
    app, tracer_provider=provider, exclude_spans=["receive", "send"]
)
KEEP_ALL = TagPolicy(ip="keep")
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("under_a_span", [False, True])
def test_the_span_has_the_contrib_middlewares_parent_kind_name_status_and_attributes(
    under_a_span: bool,
) -> None:
    """Same trace, parent, kind (SERVER, or INTERNAL under a current span), name, status and
    semconv attributes as the contrib middleware's span, with a propagated trace context."""
    scope = http_scope(
        "/users/7", query=b"a=1", headers=[(b"traceparent", TRACEPARENT), (b"host", b"h.example")]
    )
    outer = TracerProvider().get_tracer("test").start_span("outer") if under_a_span else None
    ours, theirs = _one_span(OURS, scope, outer), _one_span(CONTRIB, scope, outer)
    assert ours.context.trace_id == theirs.context.trace_id
    assert ours.parent.span_id == theirs.parent.span_id
    assert (ours.kind, ours.name, ours.status.status_code) == (
        theirs.kind,
        theirs.name,
        theirs.status.status_code,
    )
    # The policy moves the address to client.address (kept here) whatever key the contrib used.
    address = theirs.attributes.get("net.peer.ip") or theirs.attributes.get("client.address")
    assert ours.attributes["client.address"] == address == "198.51.100.7"
    shared = {key: value for key, value in theirs.attributes.items() if key not in CLIENT_ADDRESS_KEYS}
    assert {key: ours.attributes.get(key) for key in shared} == shared


@pytest.mark.parametrize("method", ["GET", "get", "PURGE", "QUERY"])
def test_the_request_metrics_name_the_method_as_the_span_does(method: str) -> None:
    """The duration metric's ``http.request.method`` is the span's sanitized method (``_OTHER``
    for one the conventions do not know), from the same computation."""
    reader = InMemoryMetricReader()
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = UserTrackingMiddleware(ok_app, tracer_provider=provider, meter_provider=MeterProvider([reader]))
    serve(app, {**http_scope("/"), "method": method})
    (span,) = exporter.get_finished_spans()
    expected = sanitize_method(method)
    assert span.attributes["http.method"] == expected
    (metric,) = [
        metric
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "http.server.duration"  # the old convention's, as the span's attributes
    ]
    assert [point.attributes["http.method"] for point in metric.data.data_points] == [expected]

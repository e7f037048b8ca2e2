"""The server span's OpenTelemetry conventions as contrib's ASGI middleware sets them (issue 19),
where contrib's own suite (tests/test_contrib_suites.py) cannot see them: the one-span design
changes how those tests count spans.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_user_tracking import TagPolicy, UserTrackingMiddleware

from ._asgi import http_scope, ok_app, serve


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

"""The WSGI door honours every excluded-URL variable contrib's WSGI-based instrumentations read
(the generic one, Flask's, Django's): an excluded request gets no span, no enrichment and no
analytics, as the ASGI side does for its variables (tests/test_conventions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_user_tracking import UserTrackingWSGIMiddleware

from ._cli_exclusion import assert_health_excluded_under_cli
from ._otlp_receiver import OTLPReceiver

VARIABLES = [
    "OTEL_PYTHON_EXCLUDED_URLS",
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
    "OTEL_PYTHON_DJANGO_EXCLUDED_URLS",
]


def _ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _get(app: Any, path: str) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "10.0.0.9",
        "wsgi.url_scheme": "http",
    }
    body = app(environ, lambda status, headers, exc_info=None: None)
    list(body)
    getattr(body, "close", lambda: None)()


@pytest.mark.parametrize("variable", VARIABLES)
def test_urls_opentelemetry_excludes_get_no_span_from_the_wsgi_door(
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """Each excluded-URL variable of contrib's WSGI-based instrumentations: a matching request
    gets no span."""
    monkeypatch.setenv(variable, "health,/metrics$")
    app = UserTrackingWSGIMiddleware(_ok, tracer_provider=tracer_provider)
    for path in ("/health", "/api/metrics", "/items"):
        _get(app, path)
    assert [span.name for span in span_exporter.get_finished_spans()] == ["GET /items"]


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_span_another_layer_made_for_an_excluded_url_is_not_enriched(
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """Under contrib's WSGI middleware (which reads none of these variables), an excluded request's
    span carries none of our attributes; another request's does."""
    monkeypatch.setenv(variable, "health")
    inner = UserTrackingWSGIMiddleware(_ok, tracer_provider=tracer_provider)
    app = OpenTelemetryMiddleware(inner, tracer_provider=tracer_provider)
    for path in ("/health", "/items"):
        _get(app, path)
    ours = {
        span.name: sorted(key for key in span.attributes or {} if key.startswith("user_tracking."))
        for span in span_exporter.get_finished_spans()
    }
    assert ours["GET /health"] == []
    assert ours["GET /items"] != []


FLASK_APP = """
from flask import Flask

app = Flask(__name__)


@app.get("/health")
def health():
    return "ok"


@app.get("/items")
def items():
    return "[]"
"""


def test_cli_flask_excluded_url_gets_no_span_and_no_pageview(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    """Under ``opentelemetry-instrument`` (gunicorn, contrib's Flask instrumentation off so the
    door decides alone), OTEL_PYTHON_FLASK_EXCLUDED_URLS=health: no span, no pageview."""
    command = ["gunicorn", "-w", "1", "-b", "{host}:{port}", "app:app"]
    assert_health_excluded_under_cli(
        tmp_path,
        otlp_receiver,
        FLASK_APP,
        command,
        OTEL_PYTHON_FLASK_EXCLUDED_URLS="health",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask",
    )

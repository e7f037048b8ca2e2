"""Handled exceptions, HTTP errors and min_status_to_capture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import HTTPException, Response
from opentelemetry.trace import StatusCode

from ._apps import Tracing, fastapi_app, get, instrumented, new_tracing


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = new_tracing()
    with instrumented(tracing):
        yield tracing


def _exception_events(tracing: Tracing, path: str) -> list[dict[str, object]]:
    span = tracing.server_span(path)
    return [dict(event.attributes or {}) for event in span.events if event.name == "exception"]


def test_http_exception_at_or_above_min_status_is_recorded(tracing: Tracing) -> None:
    """HTTPException(503) becomes one handled (escaped=False) exception event and status ERROR."""
    response = get(fastapi_app(tracing), "/unavailable")
    assert response.status_code == 503
    [event] = _exception_events(tracing, "/unavailable")
    assert event["exception.type"].endswith("HTTPException")  # type: ignore[union-attr]
    assert event["exception.escaped"] == "False"
    assert tracing.server_span("/unavailable").status.status_code is StatusCode.ERROR


def test_http_exception_below_min_status_is_not_an_error(tracing: Tracing) -> None:
    """HTTPException(404) with the default min_status_to_capture=500 records nothing."""
    assert get(fastapi_app(tracing), "/missing").status_code == 404
    assert _exception_events(tracing, "/missing") == []
    assert tracing.server_span("/missing").status.status_code is not StatusCode.ERROR


def test_min_status_to_capture_is_configurable() -> None:
    """With min_status_to_capture=400 a 404 HTTPException is recorded too."""
    tracing = new_tracing()
    with instrumented(tracing, min_status_to_capture=400):
        assert get(fastapi_app(tracing), "/missing").status_code == 404
    [event] = _exception_events(tracing, "/missing")
    assert event["exception.message"] == str(HTTPException(404, "nope"))  # older Starlette: "(404, 'nope')"


def test_capture_exception_records_a_handled_exception(tracing: Tracing) -> None:
    """out.capture_exception(exc) adds one escaped=False event and leaves the status alone."""
    assert get(fastapi_app(tracing), "/handled").status_code == 200
    [event] = _exception_events(tracing, "/handled")
    assert event["exception.type"] == "ValueError"
    assert event["exception.escaped"] == "False"
    assert tracing.server_span("/handled").status.status_code is StatusCode.UNSET


def test_5xx_without_exception_sets_error_status(tracing: Tracing) -> None:
    """A handler that returns 502 itself marks the span ERROR with no exception event."""
    app = fastapi_app(tracing)

    @app.get("/bad-gateway")
    def bad_gateway() -> Response:
        return Response(status_code=502)

    assert get(app, "/bad-gateway").status_code == 502
    span = tracing.server_span("/bad-gateway")
    assert span.status.status_code is StatusCode.ERROR
    assert _exception_events(tracing, "/bad-gateway") == []

"""``request_hook``/``response_hook`` on the WSGI side, called with contrib's signatures: the WSGI
door's, the Flask adapter's and the Django adapter's; a hook that raises never fails a request."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from opentelemetry.trace import Span

from otel_user_tracking import UserTrackingWSGIMiddleware, internal_error_counts

from ._apps import instrumented, new_tracing
from .test_wsgi_door import environ


def _hello(env: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _call(app: Any, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    started: list[Any] = []
    body = app(env, lambda status, headers, *exc: started.append((status, headers)))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return started[0]  # type: ignore[no-any-return]


def test_the_wsgi_door_calls_its_hooks_as_contribs_wsgi_middleware_does() -> None:
    """``request_hook(span, environ)`` at the start, ``response_hook(span, environ, status,
    headers)`` at the response's start: both get the server span, the headers can be added to."""
    tracing = new_tracing()
    calls: list[tuple[Any, ...]] = []

    def request_hook(span: Span, env: dict[str, Any]) -> None:
        calls.append(("request", span, env["PATH_INFO"]))
        span.set_attribute("from.request_hook", 1)

    def response_hook(span: Span, env: dict[str, Any], status: str, headers: list[Any]) -> None:
        calls.append(("response", span, env["PATH_INFO"], status))
        headers.append(("x-hook", "yes"))

    door = UserTrackingWSGIMiddleware(
        _hello, tracer_provider=tracing.provider, request_hook=request_hook, response_hook=response_hook
    )
    _, headers = _call(door, environ("/items/7"))
    (span,) = tracing.server_spans()
    assert [call[0] for call in calls] == ["request", "response"]
    assert calls[0][1].get_span_context() == calls[1][1].get_span_context() == span.get_span_context()
    assert calls[1][2:] == ("/items/7", "200 OK")
    assert ("x-hook", "yes") in headers
    assert span.attributes["from.request_hook"] == 1


def test_a_raising_wsgi_hook_never_fails_the_request() -> None:
    """Hooks that raise are counted as the app's errors; the request and its span complete."""
    tracing = new_tracing()
    before = internal_error_counts()

    def boom(*args: Any) -> None:
        raise RuntimeError("hook bug")

    door = UserTrackingWSGIMiddleware(
        _hello, tracer_provider=tracing.provider, request_hook=boom, response_hook=boom
    )
    status, _ = _call(door, environ())
    assert status == "200 OK"
    assert len(tracing.server_spans()) == 1
    after = internal_error_counts()
    for site in ("request_hook", "response_hook"):
        assert after.get(site, 0) == before.get(site, 0) + 1


def test_a_hook_that_renames_the_span_keeps_its_name() -> None:
    """The route's name at the request's end leaves a name the request hook gave in place."""
    tracing = new_tracing()
    app = Flask(__name__)
    app.get("/items/<int:item_id>")(lambda item_id: "item")
    with instrumented(tracing, request_hook=lambda span, env: span.update_name("named by hook")):
        assert app.test_client().get("/items/3", buffered=True).status_code == 200
    (span,) = tracing.server_spans()
    assert span.name == "named by hook"
    assert span.attributes["http.route"] == "/items/<int:item_id>"


def test_flask_hooks_get_contribs_flask_signatures() -> None:
    """Under ``instrument()`` a Flask app's hooks are ``request_hook(span, environ)`` and
    ``response_hook(span, status, headers)``, as contrib's Flask instrumentation calls them."""
    tracing = new_tracing()
    calls: list[tuple[Any, ...]] = []

    def response_hook(span: Span, status: str, headers: list[Any]) -> None:
        calls.append(("response", status))
        headers.append(("x-hook", "flask"))

    app = Flask(__name__)
    app.get("/hello")(lambda: "hi")
    with instrumented(
        tracing,
        request_hook=lambda span, env: calls.append(("request", env["PATH_INFO"])),
        response_hook=response_hook,
    ):
        response = app.test_client().get("/hello", buffered=True)
    assert response.headers["x-hook"] == "flask"
    assert calls == [("request", "/hello"), ("response", "200 OK")]
    assert len(tracing.server_spans()) == 1


def test_a_raising_flask_hook_never_fails_the_request() -> None:
    """A Flask app whose hooks raise still answers 200, with its span."""
    tracing = new_tracing()

    def boom(*args: Any) -> None:
        raise ValueError("hook bug")

    app = Flask(__name__)
    app.get("/hello")(lambda: "hi")
    with instrumented(tracing, request_hook=boom, response_hook=boom):
        assert app.test_client().get("/hello", buffered=True).status_code == 200
    assert len(tracing.server_spans()) == 1


def test_a_hook_that_is_not_callable_fails_at_start() -> None:
    """``request_hook=42`` is a configuration error naming the option."""
    with pytest.raises(ValueError, match="request_hook"):
        UserTrackingWSGIMiddleware(_hello, request_hook=42)

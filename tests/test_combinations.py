"""Exactly one user-tagged server span per request, whoever else traces the app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import otel_user_tracking as out

from ._apps import Tracing, bearer, fastapi_app, get, instrumented, new_tracing
from ._versions import STARLETTE_OTEL, needs_fastapi_native_tracing, needs_starlette_otel

if STARLETTE_OTEL:
    from starlette.middleware.opentelemetry import OpenTelemetryMiddleware as StarletteOTel


def _ours(tracing: Tracing) -> Any:
    return fastapi_app(tracing)


def _native(tracing: Tracing) -> Any:
    return fastapi_app(tracing, native=True)


def _contrib(tracing: Tracing) -> Any:
    app = fastapi_app(tracing, native=True)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracing.provider)
    return app


def _starlette_middleware_on_fastapi(tracing: Tracing) -> Any:
    app = fastapi_app(tracing, native=True)
    app.add_middleware(StarletteOTel, tracer_provider=tracing.provider)
    return app


def _starlette_middleware(tracing: Tracing) -> Any:
    def login_then(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def endpoint(request: Request) -> Any:
            out.set_user(id=42, name="Jane Roe", email="Jane@Example.com", roles=["admin"])
            return handler(request)

        return endpoint

    def boom(request: Request) -> Any:
        raise RuntimeError("kaboom")

    routes = [
        Route("/me", login_then(lambda request: JSONResponse({"id": 42}))),
        Route("/boom", login_then(boom)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(StarletteOTel, tracer_provider=tracing.provider)])


SETUPS = {
    "ours alone": _ours,
    "with FastAPI native tracing": _native,
    "with contrib FastAPI instrumentation": _contrib,
    "with Starlette's middleware on FastAPI": _starlette_middleware_on_fastapi,
    "with Starlette's middleware": _starlette_middleware,
}


_MARKS = {
    "with FastAPI native tracing": [needs_fastapi_native_tracing],
    "with contrib FastAPI instrumentation": [needs_fastapi_native_tracing],
    "with Starlette's middleware on FastAPI": [needs_fastapi_native_tracing, needs_starlette_otel],
    "with Starlette's middleware": [needs_starlette_otel],
}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, []), id=name) for name in sorted(SETUPS)])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Tracing, Any]]:
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=out.TagPolicy(email="mask")):
        app = SETUPS[request.param](tracing)
        yield tracing, app
    if isinstance(app, Starlette) and hasattr(app, "_is_instrumented_by_opentelemetry"):
        FastAPIInstrumentor.uninstrument_app(app)


def test_one_server_span_carries_the_user(setup: tuple[Tracing, Any]) -> None:
    """A logged-in request yields one SERVER span with user.id, name, masked email and roles."""
    tracing, app = setup
    response = get(app, "/me", headers=bearer("tok-jane"))
    assert response.status_code == 200
    assert len(tracing.server_spans()) == 1
    attributes = tracing.server_spans()[0].attributes
    assert attributes["user.id"] == "42"
    assert attributes["user.name"] == "Jane Roe"
    assert attributes["user.email"] == "J***@Example.com"
    assert tuple(attributes["user.roles"]) == ("admin",)


def test_unhandled_exception_is_one_event_and_error_status(
    setup: tuple[Tracing, Any], request: pytest.FixtureRequest
) -> None:
    """An exception escaping the handler is one `exception` event on the server span, status ERROR;
    Starlette answered it with a 500, so it is recorded with ``escaped=False`` as contrib records
    it (Starlette's own middleware, where it makes the span, records it escaped itself)."""
    tracing, app = setup
    response = get(app, "/boom", headers=bearer("tok-jane"))
    assert response.status_code == 500
    [span] = tracing.server_spans()
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1
    event = events[0].attributes
    assert event["exception.type"] == "RuntimeError"
    assert event["exception.message"] == "kaboom"
    assert "Traceback" in event["exception.stacktrace"]
    starlettes = request.node.callspec.params["setup"].startswith("with Starlette's middleware")
    assert event["exception.escaped"] == ("True" if starlettes else "False")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["user.id"] == "42"

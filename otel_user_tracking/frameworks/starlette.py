"""Putting the middleware into every Starlette (and so FastAPI) app, whenever it was created.

``Starlette.__call__`` is patched, not the constructor, so apps built before instrumentation
are covered too. On an app's first request its middleware stack is placed once:

* if a layer of the stack already makes server spans (the contrib ASGI middleware, as the
  contrib FastAPI instrumentation adds it, or Starlette's ``OpenTelemetryMiddleware``), our
  middleware goes right inside it and enriches its span;
* otherwise it wraps the whole stack (inside FastAPI's native tracing, whose span it enriches
  when that is on);
* an observer goes in front of each ``ExceptionMiddleware``, so exceptions that handlers turn
  into error responses (``HTTPException(503)``) are seen even behind ``BaseHTTPMiddleware``.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from .._errors import report_internal_error
from ..request.middleware import UserTrackingMiddleware
from ..request.state import current_request
from ..types import ASGIApp, Message, Receive, Scope, Send

_PLACED_ATTR = "_otel_user_tracking_stack"
_STARLETTE_FLAG = "starlette.opentelemetry"
_MAX_DEPTH = 64


def _server_span_layer(layer: Any) -> bool:
    cls = type(layer)
    return cls.__name__ == "OpenTelemetryMiddleware" and cls.__module__ in (
        "opentelemetry.instrumentation.asgi",
        "starlette.middleware.opentelemetry",
    )


def _is_exception_middleware(layer: Any) -> bool:
    cls = type(layer)
    return cls.__name__ == "ExceptionMiddleware" and cls.__module__.startswith("starlette.")


class HandledExceptionObserver:
    """Sees the exception a handler is answering when the error response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = current_request()
        if state is None:
            await self.app(scope, receive, send)
            return

        async def observe(message: Message) -> None:
            if message.get("type") == "http.response.start":
                try:
                    handled = sys.exc_info()[1]
                    status = int(message.get("status", 0))
                    if isinstance(handled, Exception):
                        state.exceptions.handled.append(handled)
                        if status >= state.config.min_status_to_capture:
                            state.exceptions.record_once(handled, escaped=False)
                except Exception as exc:
                    report_internal_error("handled_exception", exc)
            await send(message)

        await self.app(scope, receive, observe)


class DeferToCurrentServerSpan:
    """Makes Starlette's ``OpenTelemetryMiddleware`` step aside when a server span exists.

    Starlette's middleware starts its span from the request headers, not the current
    context, so under FastAPI's native tracing it would make a second SERVER span. Its own
    re-entry flag tells it not to.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current = trace.get_current_span()
        if (
            scope.get("type") != "http"
            or _STARLETTE_FLAG in scope
            or not current.is_recording()
            or getattr(current, "kind", None) is not SpanKind.SERVER
        ):
            await self.app(scope, receive, send)
            return
        scope[_STARLETTE_FLAG] = True
        try:
            await self.app(scope, receive, send)
        finally:
            scope.pop(_STARLETTE_FLAG, None)


def _chain(stack: Any) -> list[Any]:
    layers: list[Any] = []
    layer = stack
    while layer is not None and len(layers) < _MAX_DEPTH:
        layers.append(layer)
        layer = getattr(layer, "app", None)
    return layers


def place(stack: ASGIApp, make: Callable[[ASGIApp], UserTrackingMiddleware]) -> ASGIApp:
    """Insert our middleware (and exception observers) into a built middleware stack."""
    layers = _chain(stack)
    if any(isinstance(layer, UserTrackingMiddleware) for layer in layers):
        return stack
    for parent, child in zip(layers, layers[1:]):
        if _is_exception_middleware(child):
            parent.app = HandledExceptionObserver(child)
    span_layers = [layer for layer in layers if _server_span_layer(layer)]
    if not span_layers:
        return make(stack)
    innermost = span_layers[-1]
    innermost.app = make(innermost.app)
    if any(type(layer).__module__ == "starlette.middleware.opentelemetry" for layer in span_layers):
        return DeferToCurrentServerSpan(stack)
    return stack


class StarlettePatch:
    """Patches ``Starlette.__call__``; ``undo()`` restores it and rebuilds placed stacks."""

    def __init__(self, make: Callable[[ASGIApp], UserTrackingMiddleware]) -> None:
        from starlette.applications import Starlette

        self._cls = Starlette
        self._original = Starlette.__call__
        self._apps: weakref.WeakSet[Any] = weakref.WeakSet()
        original = self._original
        apps = self._apps

        async def __call__(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
            placed = _placed_stack(app, make, apps)
            if placed is None:
                await original(app, scope, receive, send)
                return
            scope["app"] = app
            await placed(scope, receive, send)

        __call__.__wrapped__ = original  # type: ignore[attr-defined]
        Starlette.__call__ = __call__  # type: ignore[method-assign,assignment]

    def undo(self) -> None:
        self._cls.__call__ = self._original  # type: ignore[method-assign]
        for app in list(self._apps):
            app.middleware_stack = None
            if hasattr(app, _PLACED_ATTR):
                delattr(app, _PLACED_ATTR)
        self._apps.clear()


def _placed_stack(
    app: Any, make: Callable[[ASGIApp], UserTrackingMiddleware], apps: weakref.WeakSet[Any]
) -> Optional[ASGIApp]:
    """The app's stack with our middleware in place; None (run unpatched) if that fails."""
    try:
        stack: Optional[ASGIApp] = app.middleware_stack
        if stack is not None and getattr(app, _PLACED_ATTR, None) is stack:
            return stack
        if stack is None:
            stack = app.build_middleware_stack()
        placed = place(stack, make)
        app.middleware_stack = placed
        setattr(app, _PLACED_ATTR, placed)
        apps.add(app)
        return placed
    except Exception as exc:
        report_internal_error("starlette_placement", exc)
        return None


def install(doors: Any) -> StarlettePatch:
    """The Starlette (and so FastAPI) adapter: every app's stack gets the ASGI front door."""
    return StarlettePatch(doors.asgi)

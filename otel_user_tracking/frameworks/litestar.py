"""Putting the ASGI front door into every Litestar app, whenever and however it was created.

``Litestar.__call__`` is patched, as Starlette's is, so ``litestar run`` (whose CLI calls
anything that is not a ``Litestar`` as an app factory, which a wrapper would be) and uvicorn
run the app with no code. Per app, on its first call:

* the front door wraps the app; just inside it, the route template Litestar's router leaves
  in the scope (``scope["path_template"]``) is reported when the response starts, or no
  route when the router matched none (``scope["route_handler"]`` unset: a 404 or 405);
* an ``after_exception`` hook reports the exception Litestar's exception handlers turn into
  a response (every exception a handler raises), so a 500 they render is one exception
  event, ``exception.escaped=false``.

The user needs nothing here: Litestar's auth middleware (``JWTAuth``, session auth) leaves
it in ``scope["user"]``, which the request core reads.
"""

from __future__ import annotations

from typing import Any, Callable

from .._errors import report_internal_error
from ..request.framework import report_handled_exception, report_route, report_unmatched
from ..types import ASGIApp, Message, Receive, Scope, Send

_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.close"})


class RouteReporter:
    """Reports the route Litestar matched when the response starts (the router sets it first)."""

    def __init__(self, app: Any, call: Callable[..., Any]) -> None:
        self.app = app
        self._call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self._call(self.app, scope, receive, send)
            return
        reported = False

        async def report_at_start(message: Message) -> None:
            nonlocal reported
            if not reported and message.get("type") in _STARTS:
                reported = True
                template = scope.get("path_template")
                if isinstance(template, str) and template and "route_handler" in scope:
                    report_route(template)
                else:
                    report_unmatched()
            await send(message)

        await self._call(self.app, scope, receive, report_at_start)


async def _report_exception(exc: BaseException, scope: Any) -> None:
    """Litestar's ``after_exception`` hook: the exception its handlers are about to render."""
    report_handled_exception(exc)


class LitestarPatch:
    """Patches ``Litestar.__call__``; ``undo()`` restores it and takes the hooks out again."""

    def __init__(self, make: Callable[[ASGIApp], ASGIApp]) -> None:
        from litestar import Litestar

        cls: Any = Litestar  # typed against Litestar's own scope types, which ours are not
        self._cls = cls
        self._original = original = cls.__call__
        # Litestar apps have slots and no weak references: keyed by id, the app kept to compare.
        doors: dict[int, tuple[Any, ASGIApp]] = {}
        self._doors = doors

        async def __call__(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
            placed = doors.get(id(app))
            if placed is None or placed[0] is not app:
                door = _place(app, make, original)
                if door is None:
                    await original(app, scope, receive, send)
                    return
                placed = doors[id(app)] = (app, door)
            await placed[1](scope, receive, send)

        __call__.__wrapped__ = original  # type: ignore[attr-defined]
        cls.__call__ = __call__

    def undo(self) -> None:
        self._cls.__call__ = self._original
        for app, _ in self._doors.values():
            hooks = app.after_exception
            if _report_exception in hooks:
                hooks.remove(_report_exception)
        self._doors.clear()


def _place(app: Any, make: Callable[[ASGIApp], ASGIApp], original: Callable[..., Any]) -> Any:
    """The app behind the front door, with the exception hook added; None if that fails."""
    try:
        door = make(RouteReporter(app, original))
        if _report_exception not in app.after_exception:
            app.after_exception.append(_report_exception)
        return door
    except Exception as exc:
        report_internal_error("litestar_placement", exc)
        return None


def install(doors: Any) -> LitestarPatch:
    """The Litestar adapter: every app gets the ASGI front door, its routes and its errors."""
    return LitestarPatch(doors.asgi)

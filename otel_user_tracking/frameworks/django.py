"""The Django adapter: every Django app, under ASGI or WSGI, gets the front door.

* ``ASGIHandler.__call__`` and ``WSGIHandler.__call__`` run through the ASGI and WSGI doors,
  which make the server span around the whole request. Django refuses the ASGI lifespan
  protocol, so the ASGI door answers it and the analytics are flushed at uvicorn's shutdown.
* As a handler loads its middleware, one of ours joins the chain: first, or right inside
  contrib's ``_DjangoMiddleware`` when contrib's Django instrumentation put that in
  ``MIDDLEWARE``. Contrib's span is then the server span: the door runs around the rest of
  the chain to enrich it, and the handler's door leaves the request to it.
* After the view our middleware reports the route (``resolver_match.route``, as contrib names
  its spans; unmatched requests by the method alone) and the user, only if the request
  already loaded it: ``request.user`` is lazy, and reading it would query the database.
* ``response_for_exception`` (Django's 500 page) and ``process_exception_by_middleware`` (a
  middleware's own error response) report the exceptions turned into responses.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Iterable
from typing import Any, Callable, Optional

from .._errors import report_internal_error
from ..agents import warm_up
from ..request.framework import report_handled_exception, report_route, report_unmatched, report_user
from ..request.identity import UserInfo
from ..request.lifecycle import HOOK_NAMED_KEY
from ..request.state import current_request
from ..request.wsgi import UserTrackingWSGIMiddleware, call_hook
from ..types import Message, Receive, Scope, Send

CONTRIB_MIDDLEWARE = "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
ASYNC_MIDDLEWARE = f"{__name__}.async_middleware"
SYNC_MIDDLEWARE = f"{__name__}.sync_middleware"
_INNER_SPAN_ATTR = "_otel_user_tracking_inner_span"  # on a handler whose chain has contrib's span
_DOOR_ATTR = "_otel_user_tracking_door"
_REQUEST_KEY = "otel_user_tracking.django_request"
_RESPONSE_KEY = "otel_user_tracking.django_response"


class _Installed:
    """The doors of the installed patch, which the middleware Django imports by name reads."""

    doors: Any = None


def placed_middleware(names: Iterable[str], is_async: bool) -> tuple[list[str], bool]:
    """``MIDDLEWARE`` with ours in place, and whether contrib's middleware makes the span."""
    placed = list(names)
    contrib = CONTRIB_MIDDLEWARE in placed
    if ASYNC_MIDDLEWARE in placed or SYNC_MIDDLEWARE in placed:
        return placed, contrib
    position = placed.index(CONTRIB_MIDDLEWARE) + 1 if contrib else 0
    placed.insert(position, ASYNC_MIDDLEWARE if is_async else SYNC_MIDDLEWARE)
    return placed, contrib


def loaded_user(request: Any) -> Any:
    """The user the request already loaded, as a ``UserInfo`` (or the app's own object), or None.

    Never triggers the lazy ``request.user``; an anonymous user is None. Groups become roles
    only when they were prefetched (``prefetch_related("groups")``): reading ``user.groups``
    would run a query the app did not run.
    """
    from django.utils.functional import LazyObject, empty

    found = vars(request)
    user = found.get("user")
    if issubclass(type(user), LazyObject):
        user = user._wrapped
        if user is empty:
            user = None
    if user is None:
        user = found.get("_acached_user")  # ``await request.auser()``
    if user is None or getattr(user, "is_authenticated", False) is not True:
        return None
    meta = getattr(user, "_meta", None)
    if meta is None:
        return user  # not a model: read as any user object
    values = vars(user)
    email_field = getattr(user, "EMAIL_FIELD", "email")
    return UserInfo.from_values(
        id=values.get(meta.pk.attname),
        name=values.get(_attname(meta, getattr(user, "USERNAME_FIELD", "username"))),
        email=values.get(_attname(meta, email_field)),
        roles=_prefetched_group_names(user),
    )


def _attname(meta: Any, name: str) -> str:
    try:
        return str(meta.get_field(name).attname)
    except Exception:
        return name


def _prefetched_group_names(user: Any) -> list[str]:
    groups = getattr(user, "_prefetched_objects_cache", {}).get("groups")
    cached = getattr(groups, "_result_cache", None)
    return [str(group.name) for group in cached] if cached else []


def report_request(request: Any, response: Any) -> None:
    """Tell the core the route Django matched and the user the request loaded."""
    try:
        match = getattr(request, "resolver_match", None)
        if match is None and getattr(response, "status_code", None) != 404:
            match = _resolve(request)  # a middleware answered before routing: name it all the same
        if match is None:
            report_unmatched()
        elif match.route:
            report_route(str(match.route))
        user = loaded_user(request)
        if user is not None:
            report_user(user)
    except Exception as exc:
        report_internal_error("django.report", exc)


def _django_door(door: Any) -> Any:
    """The WSGI doors of Django's handlers call no hook: this module calls them with the request."""
    if isinstance(door, UserTrackingWSGIMiddleware):
        door.hook_style = "django"
    return door


def _request_hook(request: Any) -> Any:
    """Call the configured ``request_hook(span, request)``, as contrib's Django middleware does
    when the request comes in; the request's state for the response hook, or None (no hook)."""
    state = current_request()
    if state is None or (state.config.request_hook is None and state.config.response_hook is None):
        return None
    hook = state.config.request_hook
    if hook is not None:
        before = getattr(state.span, "name", None)
        call_hook("request_hook", hook, state.span, request)
        if getattr(state.span, "name", None) != before:
            state.scope[HOOK_NAMED_KEY] = True  # the hook's name stays, as with contrib's
    return state


def _response_hook(state: Any, request: Any, response: Any) -> None:
    """Call the configured ``response_hook(span, request, response)``."""
    hook = state.config.response_hook
    if hook is not None:
        call_hook("response_hook", hook, state.span, request, response)


def _resolve(request: Any) -> Any:
    from django.urls import Resolver404, resolve

    try:
        return resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return None


def _asgi_response_start(response: Any) -> Message:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


_BODY_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


async def _receive_nothing() -> Message:
    return {"type": "http.disconnect"}


async def _discard(message: Message) -> None:
    return None


def async_middleware(get_response: Callable[[Any], Awaitable[Any]]) -> Any:
    """Our middleware in an ASGI handler's chain (see the module docstring)."""
    from asgiref.sync import markcoroutinefunction

    async def rest_of_chain(scope: Scope, receive: Receive, send: Send) -> None:
        request = scope[_REQUEST_KEY]
        hooks = _request_hook(request)
        response = scope[_RESPONSE_KEY] = await get_response(request)
        report_request(request, response)
        if hooks is not None:
            _response_hook(hooks, request, response)
        start = _asgi_response_start(response)
        given = len(start["headers"])
        await send(start)
        for name, value in start["headers"][given:]:  # the door's (the response propagator's)
            response[name.decode("latin-1")] = value.decode("latin-1")
        await send(_BODY_END)

    doors = _Installed.doors
    door = doors.asgi(rest_of_chain) if doors is not None else None

    async def track(request: Any) -> Any:
        if door is None or current_request() is not None:
            hooks = _request_hook(request)
            response = await get_response(request)
            report_request(request, response)
            if hooks is not None:
                _response_hook(hooks, request, response)
            return response
        scope = {**request.scope, _REQUEST_KEY: request}
        await door(scope, _receive_nothing, _discard)
        return scope[_RESPONSE_KEY]

    return markcoroutinefunction(track)


def sync_middleware(get_response: Callable[[Any], Any]) -> Any:
    """Our middleware in a WSGI handler's chain (see the module docstring)."""

    def rest_of_chain(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request = environ[_REQUEST_KEY]
        hooks = _request_hook(request)
        response = environ[_RESPONSE_KEY] = get_response(request)
        report_request(request, response)
        if hooks is not None:
            _response_hook(hooks, request, response)
        headers = list(response.items())
        given = len(headers)
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        for name, value in headers[given:]:  # the door's (the response propagator's)
            response[name] = value
        return []

    doors = _Installed.doors
    door = _django_door(doors.wsgi(rest_of_chain)) if doors is not None else None

    def track(request: Any) -> Any:
        if door is None or current_request() is not None:
            hooks = _request_hook(request)
            response = get_response(request)
            report_request(request, response)
            if hooks is not None:
                _response_hook(hooks, request, response)
            return response
        environ = {**request.environ, _REQUEST_KEY: request}
        body = door(environ, _ignore_start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return environ[_RESPONSE_KEY]

    return track


def _ignore_start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


async_middleware.sync_capable = False  # type: ignore[attr-defined]
async_middleware.async_capable = True  # type: ignore[attr-defined]
sync_middleware.sync_capable = True  # type: ignore[attr-defined]
sync_middleware.async_capable = False  # type: ignore[attr-defined]


def _door_of(handler: Any, make: Callable[[Any], Any], original: Callable[..., Any]) -> Any:
    door = handler.__dict__.get(_DOOR_ATTR)
    if door is None:
        door = _django_door(make(types.MethodType(original, handler)))
        setattr(handler, _DOOR_ATTR, door)
    return door


class DjangoPatch:
    """Patches Django's handlers, middleware loading and exception responses; ``undo()`` restores."""

    def __init__(self, doors: Any) -> None:
        from django.core.handlers import exception
        from django.core.handlers.asgi import ASGIHandler
        from django.core.handlers.base import BaseHandler
        from django.core.handlers.wsgi import WSGIHandler

        self._restore = [
            (ASGIHandler, "__call__", ASGIHandler.__call__),
            (WSGIHandler, "__call__", WSGIHandler.__call__),
            (BaseHandler, "load_middleware", BaseHandler.load_middleware),
            (BaseHandler, "process_exception_by_middleware", BaseHandler.process_exception_by_middleware),
            (exception, "response_for_exception", exception.response_for_exception),
        ]
        replacements = (
            _asgi_call(ASGIHandler.__call__, doors),
            _wsgi_call(WSGIHandler.__call__, doors),
            _load_middleware(BaseHandler.load_middleware),
            _process_exception_by_middleware(BaseHandler.process_exception_by_middleware),
            _response_for_exception(exception.response_for_exception),
        )
        _Installed.doors = doors
        warm_up()  # the doors are made at each handler's first request: build the bot rules now
        for (owner, name, original), replacement in zip(self._restore, replacements):
            replacement.__wrapped__ = original  # type: ignore[attr-defined]
            setattr(owner, name, replacement)

    def undo(self) -> None:
        for owner, name, original in self._restore:
            setattr(owner, name, original)
        _Installed.doors = None


def _asgi_call(original: Callable[..., Any], doors: Any) -> Callable[..., Any]:
    async def __call__(handler: Any, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan" or (kind == "http" and not handler.__dict__.get(_INNER_SPAN_ATTR)):
            door = _door_of(handler, doors.asgi, original)
            await door(scope, receive, send)
        else:
            await original(handler, scope, receive, send)

    return __call__


def _wsgi_call(original: Callable[..., Any], doors: Any) -> Callable[..., Any]:
    def __call__(handler: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if handler.__dict__.get(_INNER_SPAN_ATTR):
            return original(handler, environ, start_response)
        return _door_of(handler, doors.wsgi, original)(environ, start_response)

    return __call__


def _load_middleware(original: Callable[..., Any]) -> Callable[..., Any]:
    def load_middleware(handler: Any, is_async: bool = False) -> None:
        from django.core.handlers import base

        settings = base.settings  # the object load_middleware reads (tests replace django.conf's)
        try:
            given = settings.MIDDLEWARE
            placed, contrib = placed_middleware(given, is_async)
            setattr(handler, _INNER_SPAN_ATTR, contrib)
        except Exception as exc:
            report_internal_error("django.middleware", exc)
            original(handler, is_async)
            return
        settings.MIDDLEWARE = placed
        try:
            original(handler, is_async)
        finally:
            settings.MIDDLEWARE = given

    return load_middleware


def _process_exception_by_middleware(original: Callable[..., Any]) -> Callable[..., Any]:
    def process_exception_by_middleware(handler: Any, exception: Exception, request: Any) -> Any:
        response = original(handler, exception, request)
        if response is not None:
            report_handled_exception(exception)
        return response

    return process_exception_by_middleware


def _response_for_exception(original: Callable[..., Any]) -> Callable[..., Any]:
    def response_for_exception(request: Any, exc: Exception) -> Any:
        report_handled_exception(exc)
        return original(request, exc)

    return response_for_exception


def install(doors: Any) -> Optional[DjangoPatch]:
    """The Django adapter: every ASGI and WSGI handler gets its front door and our middleware."""
    return DjangoPatch(doors)

"""Putting the ASGI front door into every Quart app, and reading what Quart knows of a request.

``Quart.__call__`` is patched, so every app gets the front door however it is served
(``hypercorn``, ``uvicorn``, ``quart run``), with no code. Quart's signals then report:

* ``request_started``: the route, ``request.url_rule.rule`` (``/books/<int:pk>``), or no
  route when none matched;
* ``got_request_exception``: an exception no handler caught, which Quart renders as a 500
  itself; and a wrapped ``handle_user_exception`` the ones an ``errorhandler`` renders;
  either is one exception event if the response reaches ``min_status_to_capture``;
* ``request_finished``: quart-auth's user, only if quart-auth already loaded it for this
  request (read where it keeps it; this never triggers a load).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional

from .._errors import report_internal_error
from ..request.framework import report_handled_exception, report_route, report_unmatched, report_user
from ..types import ASGIApp, Receive, Scope, Send

_DOOR_ATTR = "_otel_user_tracking_door"
# Where quart-auth users may carry the fields the request core reads (``auth_id`` is the id).
_USER_FIELDS = ("username", "name", "display_name", "email", "roles", "groups")


async def _on_request_started(sender: Any, **extra: Any) -> None:
    from quart import request

    try:
        rule = request.url_rule
        template = getattr(rule, "rule", None)
    except Exception as exc:
        report_internal_error("quart.route", exc)
        return
    if isinstance(template, str) and template:
        report_route(template)
    else:
        report_unmatched()


async def _on_exception(sender: Any, exception: Any = None, **extra: Any) -> None:
    if isinstance(exception, BaseException):
        report_handled_exception(exception)


async def _on_request_finished(sender: Any, **extra: Any) -> None:
    try:
        user = loaded_auth_user(sender)
    except Exception as exc:
        report_internal_error("quart.user", exc)
        return
    if user is not None:
        report_user(user)


def loaded_auth_user(app: Any) -> Optional[dict[str, Any]]:
    """quart-auth's user of this request as a mapping, if it was loaded; None otherwise.

    quart-auth keeps a loaded user on ``g`` (newer releases) or the request context under its
    ``attribute_name``. Its ``is_authenticated`` is an async property, so the user is read
    as a mapping: ``auth_id`` as the id, plain attributes as the rest.
    """
    extensions = getattr(app, "extensions", {}).get("QUART_AUTH") or ()
    if not extensions:
        return None
    from quart import g
    from quart.globals import request_ctx

    holders = (g, request_ctx)
    for extension in extensions:
        name = getattr(extension, "attribute_name", None)
        if not isinstance(name, str):
            continue
        for holder in holders:
            user = getattr(holder, name, None)
            if user is not None:
                return _as_mapping(user)
    return None


def _as_mapping(user: Any) -> Optional[dict[str, Any]]:
    auth_id = getattr(user, "auth_id", None)
    if auth_id is None:
        return None  # anonymous
    values: dict[str, Any] = {"id": auth_id}
    for field in _USER_FIELDS:
        value = getattr(user, field, None)
        if inspect.isawaitable(value):  # an async property: reading it would need awaiting
            close = getattr(value, "close", None)
            if close is not None:
                close()
            continue
        if value is not None:
            values[field] = value
    return values


class QuartPatch:
    """Patches ``Quart.__call__`` and ``handle_user_exception`` and connects the signals;
    ``undo()`` reverses all three."""

    def __init__(self, make: Callable[[ASGIApp], ASGIApp]) -> None:
        from quart import Quart
        from quart.signals import got_request_exception, request_finished, request_started

        cls: Any = Quart  # typed against Quart's own scope types, which ours are not
        self._cls = cls
        self._call = call = cls.__call__
        self._handle = handle = cls.handle_user_exception
        self._signals = (
            (request_started, _on_request_started),
            (got_request_exception, _on_exception),
            (request_finished, _on_request_finished),
        )
        self._apps: list[Any] = []
        apps = self._apps

        async def __call__(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
            door = app.__dict__.get(_DOOR_ATTR)
            if door is None:
                try:
                    door = make(functools.partial(call, app))
                    setattr(app, _DOOR_ATTR, door)
                    apps.append(app)
                except Exception as exc:
                    report_internal_error("quart_placement", exc)
                    await call(app, scope, receive, send)
                    return
            await door(scope, receive, send)

        async def handle_user_exception(app: Any, error: Exception) -> Any:
            report_handled_exception(error)
            return await handle(app, error)

        __call__.__wrapped__ = call  # type: ignore[attr-defined]
        handle_user_exception.__wrapped__ = handle  # type: ignore[attr-defined]
        cls.__call__ = __call__
        cls.handle_user_exception = handle_user_exception
        for signal, receiver in self._signals:
            signal.connect(receiver, weak=False)

    def undo(self) -> None:
        self._cls.__call__ = self._call
        self._cls.handle_user_exception = self._handle
        for signal, receiver in self._signals:
            signal.disconnect(receiver)
        for app in self._apps:
            app.__dict__.pop(_DOOR_ATTR, None)
        self._apps.clear()


def install(doors: Any) -> QuartPatch:
    """The Quart adapter: every app gets the ASGI front door, its routes, errors and user."""
    return QuartPatch(doors.asgi)

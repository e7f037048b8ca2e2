"""Putting the WSGI front door into every Flask app, whenever it was created.

``Flask.__call__`` is patched, not the constructor, so apps built before instrumentation are
covered too. On an app's first request the door is placed once, so that the request gets
exactly one SERVER span:

* by default the door wraps the app (``app.wsgi_app`` and all) and makes the span;
* if contrib's WSGI middleware wraps ``app.wsgi_app``, the door goes right inside it and
  enriches its span;
* if contrib's Flask instrumentation is active on the app (its span starts in a
  ``before_request`` hook and ends in a ``teardown_request`` one), hooks of ours run right
  after its start and before its end, and enrich that span;
* a door the app put in itself (``app.wsgi_app = UserTrackingWSGIMiddleware(...)``, with its
  own options) is left alone.

What only Flask knows is read where Flask has it, by patching three more methods (rather
than connecting to its signals: blinker's dispatch cost more than the rest of the adapter):
at the end of ``full_dispatch_request``, the route template (``request.url_rule.rule``; a
404 no rule matched is named by its method alone) and the user; in ``handle_exception``, the
exception Flask turns into its 500 (what ``got_request_exception`` reports); in
``handle_user_exception``, one an ``errorhandler`` answered, which counts if the response is
a 5xx. The user is Flask-Login's only if the app loaded it this request (``g._login_user``:
the user loader is never called from here), else ``g.user``.
"""

from __future__ import annotations

import contextlib
import threading
import types
import weakref
from typing import Any, Callable, NamedTuple, Optional

from .._errors import report_internal_error
from ..agents import warm_up
from ..request.framework import report_handled_exception, report_route, report_unmatched, report_user
from ..request.lifecycle import note_response_status
from ..request.state import current_request
from ..request.wsgi import BODY_READY_KEY, UserTrackingWSGIMiddleware
from ..types import Environ, StartResponse

_MAX_DEPTH = 16
_CONTRIB_WSGI = ("opentelemetry.instrumentation.wsgi", "OpenTelemetryMiddleware")
_CONTRIB_FLASK_HOOKS = "opentelemetry.instrumentation.flask"

Wrap = Callable[[Any], UserTrackingWSGIMiddleware]


class FlaskPatch:
    """Patches four methods of ``Flask`` (see the module docstring); ``undo()`` restores them."""

    def __init__(self, wrap: Wrap) -> None:
        import flask

        warm_up()  # the doors are made at each app's first request: build the bot rules now
        self._cls = flask.Flask
        self._originals: dict[str, Any] = {}
        self._doors: weakref.WeakKeyDictionary[Any, Optional[UserTrackingWSGIMiddleware]] = (
            weakref.WeakKeyDictionary()
        )
        self._placed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._hooks: weakref.WeakKeyDictionary[Any, _Hooks] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        original_call, doors = flask.Flask.__call__, self._doors

        def __call__(app: Any, environ: Environ, start_response: StartResponse) -> Any:
            try:
                door = doors[app] if app in doors else self._place(app, wrap)
            except Exception as exc:
                report_internal_error("flask_placement", exc)
                door = None
            if door is None:
                return original_call(app, environ, start_response)
            return door(environ, start_response)

        def full_dispatch_request(app: Any) -> Any:
            try:
                response = self._originals["full_dispatch_request"](app)
            finally:
                _report_route_and_user()
            _note_body_ready(response)
            return response

        def handle_user_exception(app: Any, exc: Exception) -> Any:
            report_handled_exception(exc)  # recorded if the response is a 5xx (min_status_to_capture)
            return self._originals["handle_user_exception"](app, exc)

        def handle_exception(app: Any, exc: Exception) -> Any:
            report_handled_exception(exc)  # Flask's 500 (what got_request_exception reports)
            response = self._originals["handle_exception"](app, exc)
            _note_body_ready(response)
            return response

        patches: tuple[Any, ...] = (__call__, full_dispatch_request, handle_user_exception, handle_exception)
        for patched in patches:
            name = patched.__name__
            self._originals[name] = patched.__wrapped__ = getattr(flask.Flask, name)
            setattr(flask.Flask, name, patched)

    def _place(self, app: Any, wrap: Wrap) -> Optional[UserTrackingWSGIMiddleware]:
        """The door for ``app`` (None when it runs without one at the ``__call__`` level),
        placed once even when a threaded server's first requests arrive together."""
        with self._lock:
            if app in self._doors:
                return self._doors[app]
            self._doors[app] = None  # a placement that fails is not retried on every request
            door = self._placed_door(app, wrap)
            self._doors[app] = door
            return door

    def _placed_door(self, app: Any, wrap: Wrap) -> Optional[UserTrackingWSGIMiddleware]:
        chain = _chain(app.wsgi_app)
        door: Optional[UserTrackingWSGIMiddleware] = None
        if any(isinstance(layer, UserTrackingWSGIMiddleware) for layer in chain):
            pass  # the app's own door, with its own options
        elif getattr(app, "_is_instrumented_by_opentelemetry", False):
            self._hooks[app] = _add_hooks(app, _flask_door(wrap(app.wsgi_app)))
        else:
            contrib = next((layer for layer in reversed(chain) if _is_contrib_wsgi(layer)), None)
            if contrib is not None:
                contrib.wsgi = _flask_door(wrap(contrib.wsgi))
                self._placed.add(app)
            else:
                door = _flask_door(wrap(_FlaskApp(app, self._originals["__call__"])))
        return door

    def undo(self) -> None:
        for name, original in self._originals.items():
            setattr(self._cls, name, original)
        for app in list(self._placed):
            for layer in _chain(app.wsgi_app):
                inner = getattr(layer, "wsgi", None)
                if _is_contrib_wsgi(layer) and isinstance(inner, UserTrackingWSGIMiddleware):
                    layer.wsgi = inner.app
        for app, hooks in list(self._hooks.items()):
            hooks.remove(app)
        self._doors.clear()
        self._hooks.clear()


class _FlaskApp:
    """The app as the door calls it: Flask's own ``__call__`` (``app.wsgi_app``)."""

    def __init__(self, app: Any, call: Callable[..., Any]) -> None:
        self.app = weakref.proxy(app)  # the app's door must not keep the app alive
        self._call = call

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        return self._call(self.app, environ, start_response)


def _flask_door(door: Any) -> Any:
    """A door this adapter placed calls the hooks with contrib's Flask signatures."""
    if isinstance(door, UserTrackingWSGIMiddleware):
        door.hook_style = "flask"
    return door


def _chain(wsgi_app: Any) -> list[Any]:
    """``app.wsgi_app`` and the layers it wraps (``.wsgi``, ``.app``), outermost first."""
    layers: list[Any] = []
    layer = wsgi_app
    while layer is not None and len(layers) < _MAX_DEPTH:
        layers.append(layer)
        layer = getattr(layer, "wsgi", None) or getattr(layer, "app", None)
    return layers


def _is_contrib_wsgi(layer: Any) -> bool:
    cls = type(layer)
    return (cls.__module__, cls.__name__) == _CONTRIB_WSGI


class _Hooks(NamedTuple):
    """Our hooks on an app that contrib's Flask instrumentation traces."""

    before: Callable[[], None]
    after: Callable[[Any], Any]
    teardown: Callable[[Optional[BaseException]], None]

    def remove(self, app: Any) -> None:
        for funcs, hook in (
            (app.before_request_funcs, self.before),
            (app.after_request_funcs, self.after),
            (app.teardown_request_funcs, self.teardown),
        ):
            with contextlib.suppress(KeyError, ValueError):
                funcs[None].remove(hook)


def _add_hooks(app: Any, door: UserTrackingWSGIMiddleware) -> _Hooks:
    """Enrich contrib's Flask span: adopt it right after its ``before_request`` hook starts it,
    release it in a ``teardown_request`` hook that runs before contrib's ends it (Flask runs
    teardown hooks last registered first)."""
    import flask

    def adopt_span() -> None:
        door.adopt_current(flask.request.environ)

    def note_status(response: Any) -> Any:
        state = current_request()
        if state is not None:
            try:
                note_response_status(state, int(response.status_code))
            except Exception as exc:
                report_internal_error("response_start", exc)
        return response

    def release(exc: Optional[BaseException]) -> None:
        door.release(flask.request.environ)

    before = app.before_request_funcs.setdefault(None, [])
    theirs = [index for index, hook in enumerate(before) if _is_contrib_hook(hook)]
    before.insert(theirs[-1] + 1 if theirs else 0, adopt_span)
    app.after_request_funcs.setdefault(None, []).append(note_status)
    app.teardown_request_funcs.setdefault(None, []).append(release)
    return _Hooks(adopt_span, note_status, release)


def _is_contrib_hook(hook: Any) -> bool:
    return str(getattr(hook, "__module__", "")).startswith(_CONTRIB_FLASK_HOOKS)


def _note_body_ready(response: Any) -> None:
    """A response whose body is not a generator ends the request when the app returns (as
    contrib's Flask span ends at teardown); a streamed one (``stream_with_context``, a view's
    generator) when the server has sent it."""
    if current_request() is None:
        return
    try:
        if not isinstance(response.response, types.GeneratorType):
            import flask

            flask.request.environ[BODY_READY_KEY] = True
    except Exception as exc:
        report_internal_error("flask_request", exc)


def _report_route_and_user() -> None:
    """The route Flask matched (or that it matched none), and the user the app loaded:
    Flask-Login's (``g._login_user``, set only once the app used ``current_user``), else ``g.user``."""
    if current_request() is None:
        return
    try:
        import flask

        rule = flask.request.url_rule
        if rule is not None:
            report_route(str(rule.rule))
        else:
            report_unmatched()
        g = flask.g
        user = g.get("_login_user")
        if user is None:
            user = g.get("user")
        if user is not None:
            report_user(user)
    except Exception as exc:
        report_internal_error("flask_request", exc)


def install(doors: Any) -> FlaskPatch:
    """The Flask adapter: every app gets the WSGI front door."""
    return FlaskPatch(doors.wsgi)

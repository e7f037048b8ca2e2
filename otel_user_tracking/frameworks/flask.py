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

What only Flask knows comes from its signals, connected once: the route template
(``request.url_rule.rule``, or a 404's method-only name) when the request starts, the
exception ``handle_exception`` turned into a 500 (``got_request_exception``), and the user
when the request tears down; an exception an ``errorhandler`` answered comes from
``Flask.handle_user_exception`` (patched too), and counts if the response is a 5xx. The user
is Flask-Login's only if the app loaded it this request (``g._login_user``: the user loader
is never called from here), else ``g.user``.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

from .._errors import report_internal_error
from ..request.framework import report_handled_exception, report_route, report_unmatched, report_user
from ..request.wsgi import UserTrackingWSGIMiddleware
from ..types import Environ, StartResponse

_MAX_DEPTH = 16
_CONTRIB_WSGI = ("opentelemetry.instrumentation.wsgi", "OpenTelemetryMiddleware")
_CONTRIB_FLASK_HOOKS = "opentelemetry.instrumentation.flask"

Wrap = Callable[[Any], UserTrackingWSGIMiddleware]


class FlaskPatch:
    """Patches ``Flask.__call__`` and connects the signals; ``undo()`` restores both."""

    def __init__(self, wrap: Wrap) -> None:
        import flask

        self._flask = flask
        self._cls = flask.Flask
        self._original = flask.Flask.__call__
        self._doors: weakref.WeakKeyDictionary[Any, Optional[UserTrackingWSGIMiddleware]] = (
            weakref.WeakKeyDictionary()
        )
        self._placed: weakref.WeakSet[Any] = weakref.WeakSet()
        original, doors = self._original, self._doors

        def __call__(app: Any, environ: Environ, start_response: StartResponse) -> Any:
            try:
                door = doors[app] if app in doors else self._place(app, wrap)
            except Exception as exc:
                report_internal_error("flask_placement", exc)
                doors[app] = door = None
            if door is None:
                return original(app, environ, start_response)
            return door(environ, start_response)

        __call__.__wrapped__ = original  # type: ignore[attr-defined]
        flask.Flask.__call__ = __call__  # type: ignore[method-assign,assignment]
        self._original_handler = handle_user_exception = flask.Flask.handle_user_exception

        def handled_by_the_app(app: Any, exc: Exception) -> Any:
            report_handled_exception(exc)  # recorded if the response is a 5xx (min_status_to_capture)
            return handle_user_exception(app, exc)

        handled_by_the_app.__wrapped__ = handle_user_exception  # type: ignore[attr-defined]
        flask.Flask.handle_user_exception = handled_by_the_app  # type: ignore[method-assign,assignment]
        flask.request_started.connect(_request_started, weak=False)
        flask.got_request_exception.connect(_got_request_exception, weak=False)
        flask.request_tearing_down.connect(_request_tearing_down, weak=False)

    def _place(self, app: Any, wrap: Wrap) -> Optional[UserTrackingWSGIMiddleware]:
        """The door for ``app`` (None when it runs without one at the ``__call__`` level)."""
        chain = _chain(app.wsgi_app)
        door: Optional[UserTrackingWSGIMiddleware] = None
        if any(isinstance(layer, UserTrackingWSGIMiddleware) for layer in chain):
            pass  # the app's own door, with its own options
        elif getattr(app, "_is_instrumented_by_opentelemetry", False):
            _add_hooks(app, wrap(app.wsgi_app))
        else:
            contrib = next((layer for layer in reversed(chain) if _is_contrib_wsgi(layer)), None)
            if contrib is not None:
                contrib.wsgi = wrap(contrib.wsgi)
                self._placed.add(app)
            else:
                door = wrap(_FlaskApp(app, self._original))
        self._doors[app] = door
        return door

    def undo(self) -> None:
        self._cls.__call__ = self._original  # type: ignore[method-assign]
        self._cls.handle_user_exception = self._original_handler  # type: ignore[method-assign]
        self._flask.request_started.disconnect(_request_started)
        self._flask.got_request_exception.disconnect(_got_request_exception)
        self._flask.request_tearing_down.disconnect(_request_tearing_down)
        for app in list(self._placed):
            for layer in _chain(app.wsgi_app):
                inner = getattr(layer, "wsgi", None)
                if _is_contrib_wsgi(layer) and isinstance(inner, UserTrackingWSGIMiddleware):
                    layer.wsgi = inner.app
        self._doors.clear()


class _FlaskApp:
    """The app as the door calls it: Flask's own ``__call__`` (``app.wsgi_app``)."""

    def __init__(self, app: Any, call: Callable[..., Any]) -> None:
        self.app = weakref.proxy(app)  # the app's door must not keep the app alive
        self._call = call

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        return self._call(self.app, environ, start_response)


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


def _add_hooks(app: Any, door: UserTrackingWSGIMiddleware) -> None:
    """Enrich contrib's Flask span: adopt it right after its ``before_request`` hook starts it,
    release it in a ``teardown_request`` hook that runs before contrib's ends it (Flask runs
    teardown hooks last registered first)."""
    import flask

    def adopt_span() -> None:
        environ = flask.request.environ
        door.adopt_current(environ)
        _request_started(app)

    def note_status(response: Any) -> Any:
        from ..request.enrichment import note_response_status
        from ..request.state import current_request

        state = current_request()
        if state is not None:
            try:
                note_response_status(state, int(response.status_code))
            except Exception as exc:
                report_internal_error("response_start", exc)
        return response

    def release(exc: Optional[BaseException]) -> None:
        _request_tearing_down(app)
        door.release(flask.request.environ)

    before = app.before_request_funcs.setdefault(None, [])
    theirs = [index for index, hook in enumerate(before) if _is_contrib_hook(hook)]
    before.insert(theirs[-1] + 1 if theirs else 0, adopt_span)
    app.after_request_funcs.setdefault(None, []).append(note_status)
    app.teardown_request_funcs.setdefault(None, []).append(release)


def _is_contrib_hook(hook: Any) -> bool:
    return str(getattr(hook, "__module__", "")).startswith(_CONTRIB_FLASK_HOOKS)


def _request_started(sender: Any, **extra: Any) -> None:
    """The route Flask matched, or the method-only name of a request it matched none for."""
    try:
        import flask

        rule = flask.request.url_rule
        if rule is not None:
            report_route(str(rule.rule))
        else:
            report_unmatched()
    except Exception as exc:
        report_internal_error("flask_route", exc)


def _got_request_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    """An exception Flask answers with an error page itself (``handle_exception``)."""
    report_handled_exception(exception)


def _request_tearing_down(sender: Any, **extra: Any) -> None:
    """The user the app loaded: Flask-Login's (never loaded here), else ``g.user``."""
    try:
        import flask

        g = flask.g
        user = g.get("_login_user")
        if user is None:
            user = g.get("user")
        if user is not None:
            report_user(user)
    except Exception as exc:
        report_internal_error("flask_user", exc)


def install(doors: Any) -> FlaskPatch:
    """The Flask adapter: every app gets the WSGI front door."""
    return FlaskPatch(doors.wsgi)

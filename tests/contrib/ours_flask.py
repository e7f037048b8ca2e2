"""The Flask suite against our Flask adapter: contrib's ``FlaskInstrumentor`` is replaced by one
whose ``instrument()`` and ``instrument_app(app)`` install our adapter (``FlaskPatch``) with the
WSGI door, built with the policy set aside, for every app or for the apps named."""

from __future__ import annotations

import weakref
from typing import Any, Optional

from ours_wsgi import policy_aside

CONTRIB_SCOPE = "opentelemetry.instrumentation.flask"


def substitute() -> None:
    import opentelemetry.instrumentation.flask as otel_flask

    otel_flask.FlaskInstrumentor = FlaskInstrumentor  # type: ignore[misc,assignment]


def door_options(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    excluded_urls: Optional[str] = None,
    request_hook: Any = None,
    response_hook: Any = None,
    **_ignored: Any,
) -> dict[str, Any]:
    """Contrib's instrumentor options as our door's (the SQL commenter is not taken: the
    tests that rely on it are listed in by_design.toml)."""
    options = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "request_hook": request_hook,
        "response_hook": response_hook,
        **policy_aside(),
    }
    if excluded_urls:
        options["excluded_urls"] = tuple(part.strip() for part in excluded_urls.split(",") if part.strip())
    return options


class _Instrumented:
    """Our adapter, installed while contrib's tests instrument anything: which apps get a door."""

    patch: Any = None
    every_app: Optional[dict[str, Any]] = None  # instrument()'s options
    apps: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
    left_out: weakref.WeakSet[Any] = weakref.WeakSet()  # uninstrument_app() after instrument()

    @classmethod
    def changed(cls) -> None:
        """Install or remove the adapter; every app's door is placed again at its next request."""
        from otel_user_tracking.frameworks.flask import FlaskPatch

        wanted = cls.every_app is not None or len(cls.apps) > 0
        if wanted and cls.patch is None:
            cls.patch = FlaskPatch(cls.door)
        elif not wanted and cls.patch is not None:
            cls.patch.undo()
            cls.patch = None
        if cls.patch is not None:
            cls.patch._doors.clear()

    @classmethod
    def door(cls, inner: Any) -> Any:
        """The door for the app ``inner`` calls (``FlaskPatch`` gives a proxy of it, or its
        ``wsgi_app`` inside contrib's WSGI middleware), or None."""
        from otel_user_tracking.request.wsgi import UserTrackingWSGIMiddleware

        app = getattr(inner, "app", None) or getattr(inner, "__self__", None)
        options = next((found for known, found in cls.apps.items() if app == known), None)
        if options is None and not any(app == known for known in cls.left_out):
            options = cls.every_app
        if options is None:
            return None
        return UserTrackingWSGIMiddleware(inner, **options)


class FlaskInstrumentor:
    """Contrib's instrumentor's API, driving our Flask adapter."""

    def instrument(self, **kwargs: Any) -> None:
        if _Instrumented.every_app is None:
            _Instrumented.every_app = door_options(**kwargs)
            _Instrumented.changed()

    def uninstrument(self, **kwargs: Any) -> None:
        _Instrumented.every_app = None
        _Instrumented.left_out.clear()
        _Instrumented.changed()

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        if app not in _Instrumented.apps:
            _Instrumented.apps[app] = door_options(**kwargs)
            _Instrumented.left_out.discard(app)
            _Instrumented.changed()

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        _Instrumented.apps.pop(app, None)
        _Instrumented.left_out.add(app)
        _Instrumented.changed()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return _Instrumented.every_app is not None

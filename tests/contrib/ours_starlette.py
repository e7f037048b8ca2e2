"""The Starlette suite against our Starlette adapter: contrib's ``StarletteInstrumentor`` is
replaced by one whose ``instrument()`` installs our adapter (``StarlettePatch``) for every app
and whose ``instrument_app(app)`` places our middleware in that app's stack as the adapter
places it (``place``), with the policy set aside."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

from ours_wsgi import policy_aside

CONTRIB_SCOPE = "opentelemetry.instrumentation.starlette"
# With ``internal_spans=True`` the per-message spans are contrib's ASGI middleware's.
RENAMED_SCOPES = ("otel_user_tracking", "opentelemetry.instrumentation.asgi")
_OURS = "_otel_user_tracking_contrib_suite"  # on an app instrument_app placed ours in


def substitute() -> None:
    import opentelemetry.instrumentation.starlette as otel_starlette

    otel_starlette.StarletteInstrumentor = instrumentor_class(CONTRIB_SCOPE)  # type: ignore[misc]


def middleware_options(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    server_request_hook: Any = None,
    client_request_hook: Any = None,
    client_response_hook: Any = None,
    excluded_urls: Optional[str] = None,
    **_ignored: Any,
) -> dict[str, Any]:
    """Contrib's instrumentor options as our middleware's (``exclude_spans``, ``http_capture_headers_*``
    are not taken: the tests that rely on them are listed in by_design.toml)."""
    hooks = {
        "server_request_hook": server_request_hook,
        "client_request_hook": client_request_hook,
        "client_response_hook": client_response_hook,
    }
    options = {"tracer_provider": tracer_provider, "meter_provider": meter_provider, **policy_aside()}
    options["internal_spans"] = True  # nearly every test counts the per-message spans
    if excluded_urls:
        options["excluded_urls"] = tuple(part.strip() for part in excluded_urls.split(",") if part.strip())
    options.update({name: hook for name, hook in hooks.items() if hook is not None})
    return options


def maker(options: dict[str, Any]) -> Callable[[Any], Any]:
    from otel_user_tracking.request.middleware import UserTrackingMiddleware

    return lambda app: UserTrackingMiddleware(app, **options)


def instrumentor_class(scope: str, extra: Optional[Callable[[], Any]] = None) -> type:
    """Contrib's instrumentor's API driving our Starlette adapter (and ``extra()``'s patch with it:
    the FastAPI adapter's, for the FastAPI suite)."""

    class Instrumentor:
        _patches: list[Any] = []
        _apps: weakref.WeakSet[Any] = weakref.WeakSet()  # instrument_app's, which uninstrument() undoes too

        def instrument(self, **kwargs: Any) -> None:
            from otel_user_tracking.frameworks.starlette import StarlettePatch

            if not Instrumentor._patches:
                Instrumentor._patches = [StarlettePatch(maker(middleware_options(**kwargs)))]
                if extra is not None:
                    Instrumentor._patches.append(extra())

        def uninstrument(self, **kwargs: Any) -> None:
            for patch in reversed(Instrumentor._patches):
                patch.undo()
            Instrumentor._patches = []
            for app in list(Instrumentor._apps):
                Instrumentor.uninstrument_app(app)

        @property
        def is_instrumented_by_opentelemetry(self) -> bool:
            return bool(Instrumentor._patches)

        @staticmethod
        def instrument_app(app: Any, **kwargs: Any) -> None:
            from otel_user_tracking.frameworks.starlette import place

            if getattr(app, _OURS, None) is not None:
                return
            build = app.build_middleware_stack
            make = maker(middleware_options(**kwargs))
            app.build_middleware_stack = lambda: place(build(), make)
            setattr(app, _OURS, build)
            app.middleware_stack = None
            Instrumentor._apps.add(app)

        @staticmethod
        def uninstrument_app(app: Any) -> None:
            if getattr(app, _OURS, None) is not None:
                del app.build_middleware_stack
                setattr(app, _OURS, None)
                app.middleware_stack = None
            Instrumentor._apps.discard(app)

    Instrumentor.__name__ = "StarletteInstrumentor" if scope.endswith("starlette") else "FastAPIInstrumentor"
    return Instrumentor

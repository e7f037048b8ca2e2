"""The FastAPI suite against our Starlette and FastAPI adapters: contrib's ``FastAPIInstrumentor``
is replaced by one that installs our Starlette adapter with the FastAPI adapter's dependency-user
patch (``instrument()``) or places our middleware in one app's stack (``instrument_app(app)``), as
``ours_starlette`` does for the Starlette suite."""

from __future__ import annotations

from typing import Any

from ours_starlette import instrumentor_class

CONTRIB_SCOPE = "opentelemetry.instrumentation.fastapi"
RENAMED_SCOPES = ("otel_user_tracking", "opentelemetry.instrumentation.asgi")


def _fastapi_patch() -> Any:
    from otel_user_tracking.frameworks.fastapi import FastAPIPatch

    return FastAPIPatch()


def substitute() -> None:
    import opentelemetry.instrumentation.fastapi as otel_fastapi

    otel_fastapi.FastAPIInstrumentor = instrumentor_class(CONTRIB_SCOPE, _fastapi_patch)  # type: ignore[misc]
    without_native_telemetry()


def without_native_telemetry() -> None:
    """FastAPI's own tracing and metrics (FastAPI releases that have ``telemetry=``) off in every
    app the tests make: it steps aside for contrib's middleware, while ours enriches its span
    (by_design.toml's [[normalization]])."""
    import inspect

    import fastapi

    init = fastapi.FastAPI.__init__
    if "telemetry" not in inspect.signature(init).parameters:
        return
    off = {"tracing": False, "metrics": False, "logs": False}

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["telemetry"] = {**off, **(kwargs.get("telemetry") or {})}
        init(self, *args, **kwargs)

    fastapi.FastAPI.__init__ = __init__  # type: ignore[method-assign]

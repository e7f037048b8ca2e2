"""What the installed dependencies can do, for tests that need a newer release than the minimum."""

from __future__ import annotations

import importlib.util

import pytest


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


STARLETTE_OTEL = _has("starlette.middleware.opentelemetry")
FASTAPI_NATIVE_TRACING = _has("fastapi.telemetry")

needs_starlette_otel = pytest.mark.skipif(
    not STARLETTE_OTEL, reason="Starlette's own OpenTelemetryMiddleware needs a Starlette that ships it (1.x)"
)
needs_fastapi_native_tracing = pytest.mark.skipif(
    not FASTAPI_NATIVE_TRACING,
    reason="FastAPI's native tracing (FastAPI(telemetry=...)) needs a newer FastAPI",
)

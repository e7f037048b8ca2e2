"""What the installed dependencies can do, for tests that need a newer release than the minimum."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

import pytest


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _release(distribution: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version(distribution))[:2])


STARLETTE_OTEL = _has("starlette.middleware.opentelemetry")
# Up to 1.41 the OTLP/HTTP exporters log a refusing backend's answer verbatim (OpenTelemetry's
# own log records, whatever the answer echoes); from 1.42 they do not.
OTLP_HTTP_EXPORTER_LOGS_ANSWERS = _release("opentelemetry-exporter-otlp-proto-http") < (1, 42)
FASTAPI_NATIVE_TRACING = _has("fastapi.telemetry")
FASTAPI_ANNOTATED_DEPENDS = _release("fastapi") >= (0, 95)

needs_starlette_otel = pytest.mark.skipif(
    not STARLETTE_OTEL, reason="Starlette's own OpenTelemetryMiddleware needs a Starlette that ships it (1.x)"
)
needs_fastapi_native_tracing = pytest.mark.skipif(
    not FASTAPI_NATIVE_TRACING,
    reason="FastAPI's native tracing (FastAPI(telemetry=...)) needs a newer FastAPI",
)
needs_fastapi_annotated = pytest.mark.skipif(
    not FASTAPI_ANNOTATED_DEPENDS, reason="Annotated[..., Depends()] needs FastAPI 0.95 or newer"
)

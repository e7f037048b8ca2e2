"""The WSGI suite against ``UserTrackingWSGIMiddleware``: contrib's ``OpenTelemetryMiddleware(...)``
builds ours, with the policy set aside."""

from __future__ import annotations

from typing import Any

CONTRIB_SCOPE = "opentelemetry.instrumentation.wsgi"


def substitute() -> None:
    """``OpenTelemetryMiddleware(...)`` in contrib's tests builds our WSGI door from now on."""
    import opentelemetry.instrumentation.wsgi as otel_wsgi

    otel_wsgi.OpenTelemetryMiddleware = wsgi_door  # type: ignore[misc,assignment]
    without_added_target()


def without_added_target() -> None:
    """Our door's request target for environs with no ``RAW_URI``/``REQUEST_URI`` (wsgiref's),
    which contrib's span lacks, left out (by_design.toml's [[normalization]])."""
    from otel_user_tracking.request.wsgi_span import WSGISpanMaker

    WSGISpanMaker._add_target = lambda self, attributes, environ: None  # type: ignore[method-assign]


def policy_aside() -> dict[str, Any]:
    """The options that let the span carry what contrib's carries: the client address kept,
    no query value scrubbed."""
    from otel_user_tracking import TagPolicy

    return {"tag_policy": TagPolicy(ip="keep"), "scrub_query_keys": frozenset()}


def wsgi_door(
    wsgi: Any,
    request_hook: Any = None,
    response_hook: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> Any:
    """``OpenTelemetryMiddleware``'s constructor, building our door with the hooks given."""
    from otel_user_tracking.request.wsgi import UserTrackingWSGIMiddleware

    return UserTrackingWSGIMiddleware(
        wsgi,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        request_hook=request_hook,
        response_hook=response_hook,
        **policy_aside(),
    )

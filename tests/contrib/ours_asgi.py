"""The ASGI suite against ``UserTrackingMiddleware``: contrib's ``OpenTelemetryMiddleware(...)``
builds ours (``make_adapter``), with the policy set aside."""

from __future__ import annotations

from typing import Any

CONTRIB_SCOPE = "opentelemetry.instrumentation.asgi"


def substitute() -> None:
    """``OpenTelemetryMiddleware(...)`` in contrib's tests builds our middleware from now on."""
    import opentelemetry.instrumentation.asgi as otel_asgi

    from otel_user_tracking.request.middleware import UserTrackingMiddleware  # imports the original first

    otel_asgi.OpenTelemetryMiddleware = make_adapter(UserTrackingMiddleware)  # type: ignore[misc]
    _drop_expected_internal_spans()


def _drop_expected_internal_spans() -> None:
    """``validate_outputs`` expects one SERVER span: the ``http receive``/``http send`` ones are left out."""
    from opentelemetry.trace import SpanKind

    try:
        from contrib_asgi.test_asgi_middleware import TestAsgiApplication
    except ImportError:
        return
    validate = TestAsgiApplication.validate_outputs

    def without_internal(expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [entry for entry in expected if entry["kind"] is not SpanKind.INTERNAL]

    def validate_outputs(self: Any, outputs: Any, error: Any = None, modifiers: Any = None, **kw: Any) -> Any:
        return validate(self, outputs, error, [*(modifiers or []), without_internal], **kw)

    TestAsgiApplication.validate_outputs = validate_outputs  # type: ignore[method-assign]


def make_adapter(middleware: Any) -> Any:
    """``OpenTelemetryMiddleware``'s constructor, building ``middleware`` with the policy set aside.

    ``TagPolicy(ip="keep")`` and no query scrubbing, so the span carries what contrib's does;
    the remaining options map one to one. Options ours does not take (``default_span_details``,
    ``exclude_spans``, ``tracer``, ``meter``, the header lists) are dropped: the tests that
    rely on them are listed in by_design.toml.
    """
    from asgiref.compatibility import guarantee_single_callable

    from otel_user_tracking import TagPolicy

    def adapter(
        app: Any,
        excluded_urls: Any = None,
        default_span_details: Any = None,
        server_request_hook: Any = None,
        client_request_hook: Any = None,
        client_response_hook: Any = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        **_ignored: Any,
    ) -> Any:
        options: dict[str, Any] = {"tag_policy": TagPolicy(ip="keep"), "scrub_query_keys": frozenset()}
        if excluded_urls:
            options["excluded_urls"] = _patterns(excluded_urls)
        hooks = {
            "server_request_hook": server_request_hook,
            "client_request_hook": client_request_hook,
            "client_response_hook": client_response_hook,
        }
        options.update({name: hook for name, hook in hooks.items() if hook is not None})
        return middleware(
            guarantee_single_callable(app),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            **options,
        )

    return adapter


def _patterns(excluded_urls: Any) -> tuple[str, ...]:
    """Contrib's ``excluded_urls`` (a comma-separated string or an ``ExcludeList``) as regexes."""
    if isinstance(excluded_urls, str):
        return tuple(part.strip() for part in excluded_urls.split(",") if part.strip())
    return tuple(pattern.pattern for pattern in getattr(excluded_urls, "_excluded_urls", ()) or ())

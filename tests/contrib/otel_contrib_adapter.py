"""A pytest plugin for contrib's own test suites: records each test's outcome, and with
``--ours`` runs them against ``UserTrackingMiddleware`` instead of ``OpenTelemetryMiddleware``.

Loaded by tests/test_contrib_suites.py in a pytest subprocess (``-p otel_contrib_adapter``,
this folder on ``PYTHONPATH``), never collected by our own suite.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ours", action="store_true", help="substitute UserTrackingMiddleware")
    parser.addoption("--outcomes", help="write {test id: [outcome, first line]} to this JSON file")


def pytest_configure(config: pytest.Config) -> None:
    config._contrib_outcomes = {}  # type: ignore[attr-defined]
    if config.getoption("--ours"):
        _substitute()


def _substitute() -> None:
    """``OpenTelemetryMiddleware(...)`` in contrib's tests builds our middleware from now on."""
    import opentelemetry.instrumentation.asgi as otel_asgi

    from otel_user_tracking.request.middleware import UserTrackingMiddleware  # imports the original first

    otel_asgi.OpenTelemetryMiddleware = make_adapter(UserTrackingMiddleware)  # type: ignore[misc]
    _normalize_views()


CONTRIB_SCOPE = "opentelemetry.instrumentation.asgi"
OUR_SCOPE = "otel_user_tracking"


def _normalize_views() -> None:
    """What the tests read, with the differences by_design.toml's [[normalization]] names set aside."""
    from opentelemetry.instrumentation.asgi import __name__ as contrib_scope
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    assert contrib_scope == CONTRIB_SCOPE
    finished = InMemorySpanExporter.get_finished_spans
    metrics_data = InMemoryMetricReader.get_metrics_data

    def get_finished_spans(self: Any) -> tuple[Any, ...]:
        return tuple(_as_contrib_span(span) for span in finished(self))

    def get_metrics_data(self: Any) -> Any:
        return _as_contrib_metrics(metrics_data(self))

    InMemorySpanExporter.get_finished_spans = get_finished_spans  # type: ignore[method-assign]
    InMemoryMetricReader.get_metrics_data = get_metrics_data  # type: ignore[method-assign]
    _drop_expected_internal_spans()


def _as_contrib_metrics(data: Any) -> Any:
    """The metrics data with our instrumentation scope named as contrib's."""
    from dataclasses import replace

    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    if data is None:
        return data

    def renamed(scoped: Any) -> Any:
        scope = scoped.scope
        if scope.name != OUR_SCOPE:
            return scoped
        return replace(
            scoped,
            scope=InstrumentationScope(CONTRIB_SCOPE, scope.version, scope.schema_url, scope.attributes),
        )

    resources = [
        replace(resource, scope_metrics=[renamed(scoped) for scoped in resource.scope_metrics])
        for resource in data.resource_metrics
    ]
    return replace(data, resource_metrics=resources)


def _as_contrib_span(span: Any) -> Any:
    """The span without our own attributes, under contrib's scope name if it is ours."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    attributes = dict(span.attributes or {})
    ours = [key for key in attributes if key.startswith(("user.", "user_tracking."))]
    if "client.address" in attributes and "http.request.method" not in attributes:
        ours.append("client.address")  # old names only: contrib's span has net.peer.ip alone
    scope = span.instrumentation_scope
    if not ours and (scope is None or scope.name != OUR_SCOPE):
        return span
    for key in ours:
        del attributes[key]
    if scope is not None and scope.name == OUR_SCOPE:
        scope = InstrumentationScope(CONTRIB_SCOPE, scope.version, scope.schema_url, scope.attributes)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=scope,
    )


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


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcomes = _outcomes(report)
    if outcomes is None:
        return
    if report.failed or (report.when == "call" and report.skipped):
        line = str(report.longrepr).strip().splitlines()[-1:] if report.longrepr else [""]
        outcomes[report.nodeid] = ["failed" if report.failed else "skipped", line[0][:300]]
    elif report.when == "call":
        outcomes.setdefault(report.nodeid, ["passed", ""])


def _outcomes(report: pytest.TestReport) -> Optional[dict[str, list[str]]]:
    config = getattr(report, "_contrib_config", None) or _CONFIG.get("config")
    return None if config is None else config._contrib_outcomes  # type: ignore[no-any-return]


_CONFIG: dict[str, Any] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--outcomes")
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(session.config._contrib_outcomes, file, indent=1, sort_keys=True)  # type: ignore[attr-defined]

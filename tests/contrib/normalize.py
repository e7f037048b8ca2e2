"""What contrib's tests read, with the differences by_design.toml's [[normalization]] names set
aside: our own span attributes, and our instrumentation scope read as contrib's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

OUR_SCOPE = "otel_user_tracking"
_OURS = ("user.", "user_tracking.")


def normalize_views(contrib_scope: str, renamed: tuple[str, ...] = (OUR_SCOPE,)) -> None:
    """Finished spans and metrics, as the in-memory exporter and reader hand them to the tests."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    finished = InMemorySpanExporter.get_finished_spans
    metrics_data = InMemoryMetricReader.get_metrics_data

    def get_finished_spans(self: Any) -> tuple[Any, ...]:
        return tuple(as_contrib_span(span, contrib_scope, renamed) for span in finished(self))

    def get_metrics_data(self: Any) -> Any:
        return as_contrib_metrics(metrics_data(self), contrib_scope, renamed)

    InMemorySpanExporter.get_finished_spans = get_finished_spans  # type: ignore[method-assign]
    InMemoryMetricReader.get_metrics_data = get_metrics_data  # type: ignore[method-assign]


def _scope(scope: Any, contrib_scope: str, renamed: tuple[str, ...]) -> Any:
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    if scope is None or scope.name not in renamed:
        return scope
    return InstrumentationScope(contrib_scope, scope.version, scope.schema_url, scope.attributes)


def as_contrib_metrics(data: Any, contrib_scope: str, renamed: tuple[str, ...]) -> Any:
    """The metrics data with our instrumentation scope named as contrib's."""
    if data is None:
        return data

    def as_contrib(scoped: Any) -> Any:
        scope = _scope(scoped.scope, contrib_scope, renamed)
        return scoped if scope is scoped.scope else replace(scoped, scope=scope)

    resources = [
        replace(resource, scope_metrics=[as_contrib(scoped) for scoped in resource.scope_metrics])
        for resource in data.resource_metrics
    ]
    return replace(data, resource_metrics=resources)


def as_contrib_span(span: Any, contrib_scope: str, renamed: tuple[str, ...]) -> Any:
    """The span without our own attributes, under contrib's scope name if it is ours."""
    from opentelemetry.sdk.trace import ReadableSpan

    attributes = dict(span.attributes or {})
    ours = [key for key in attributes if key.startswith(_OURS)]
    if "client.address" in attributes and "http.request.method" not in attributes:
        ours.append("client.address")  # old names only: contrib's span has net.peer.ip alone
    scope = _scope(span.instrumentation_scope, contrib_scope, renamed)
    if not ours and scope is span.instrumentation_scope:
        return span
    for key in ours:
        del attributes[key]
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

"""The request metrics with no meter provider set yet, and once one is set."""

from __future__ import annotations

from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out

from ._asgi import http_scope, ok_app, serve


def _totals(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    found: dict[str, float] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = metric.data.data_points
                found[metric.name] = sum(
                    getattr(point, "count", getattr(point, "value", 0)) for point in points
                )
    return found


def test_requests_before_a_meter_provider_is_set_record_nothing_and_later_ones_record() -> None:
    """Under the API's proxy (no provider yet) requests compute no metrics; once the provider is
    set (as opentelemetry-instrument or the app may do after the middleware is built) the next
    request records its duration and active_requests goes back to 0, never below."""
    proxy = _ProxyMeterProvider()
    app = out.UserTrackingMiddleware(ok_app, tracer_provider=TracerProvider(), meter_provider=proxy)
    serve(app, http_scope("/before"))
    reader = InMemoryMetricReader()
    proxy.on_set_meter_provider(MeterProvider(metric_readers=[reader]))
    serve(app, http_scope("/after"))
    found = _totals(reader)
    assert found["http.server.duration"] == 1  # one request recorded: the one after
    assert found["http.server.active_requests"] == 0

"""Events as OTLP log records, through the real OTLP/HTTP log exporter to a decoding receiver."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import RetryableSinkError, sink_from_url
from otel_user_tracking.sinks.otlp import OTLPLogsSink

from ._otlp_receiver import OTLPReceiver

WHEN = datetime(2026, 11, 20, 9, 30, 15, 250000, tzinfo=timezone.utc)
TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _event(type_: str, **fields: object) -> AnalyticsEvent:
    return AnalyticsEvent(
        type=type_,  # type: ignore[arg-type]
        trace_id=TRACE,
        span_id=SPAN,
        timestamp=WHEN,
        path="/products/7",
        route="/products/{id}",
        method="GET",
        user_id="u-42",
        visitor_id="v-1",
        **fields,  # type: ignore[arg-type]
    )


def _sink(receiver: OTLPReceiver, timeout: float = 5.0) -> OTLPLogsSink:
    exporter = OTLPLogExporter(endpoint=receiver.logs_endpoint, timeout=timeout)
    return OTLPLogsSink(exporter, resource=Resource.create({"service.name": "shop"}))


def test_events_arrive_as_log_records_linked_to_their_trace(otlp_receiver: OTLPReceiver) -> None:
    """Each event becomes one OTLP log record with its name, trace and span ids, time and attributes."""
    sink = _sink(otlp_receiver)
    sink.send(
        [
            _event("pageview", status_code=200, locale="de-DE", utm_source="news"),
            _event(
                "error", error_type="RuntimeError", error_message="kaboom", error_stacktrace="Traceback..."
            ),
            _event("custom", name="CHECKOUT_COMPLETED", meta={"plan": "pro", "seats": 3}),
        ]
    )
    sink.close()
    pageview, error, custom = otlp_receiver.log_records()
    assert [record.event_name for record in (pageview, error, custom)] == [
        "pageview",
        "error",
        "CHECKOUT_COMPLETED",
    ]
    assert [record.attributes["event.name"] for record in (pageview, error, custom)] == [
        "pageview",
        "error",
        "CHECKOUT_COMPLETED",
    ]
    for record in (pageview, error, custom):
        assert (record.trace_id, record.span_id) == (TRACE, SPAN)
        assert record.time_unix_nano == int(WHEN.timestamp() * 1e9)
        assert record.attributes["user.id"] == "u-42" and record.scope == "otel_user_tracking"
    assert pageview.attributes["http.route"] == "/products/{id}"
    assert pageview.attributes["http.response.status_code"] == 200
    assert pageview.attributes["user_tracking.utm_source"] == "news"
    assert (pageview.severity_text, error.severity_text) == ("INFO", "ERROR")
    assert error.attributes["exception.type"] == "RuntimeError" and error.body == "RuntimeError: kaboom"
    assert custom.attributes["user_tracking.meta.plan"] == "pro"
    assert custom.attributes["user_tracking.meta.seats"] == 3
    [request] = otlp_receiver.export_requests("/v1/logs")
    resource = {kv.key: kv.value.string_value for kv in request.resource_logs[0].resource.attributes}
    assert resource["service.name"] == "shop"


def test_a_failing_collector_is_a_retryable_failure(
    otlp_receiver: OTLPReceiver, closing: Callable[[Any], Any]
) -> None:
    """A collector refusing the export makes send raise RetryableSinkError."""
    otlp_receiver.fail_with = 400  # not retried inside the exporter: fast
    with pytest.raises(RetryableSinkError, match="OTLP log export failed"):
        closing(_sink(otlp_receiver)).send([_event("pageview")])


def test_the_url_takes_the_endpoint_from_the_standard_variables(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """otlp:// takes OTEL_EXPORTER_OTLP_LOGS_ENDPOINT; a host in the URL is refused naming that variable."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", otlp_receiver.logs_endpoint)
    sink = sink_from_url("otlp")
    sink.send([_event("pageview")])
    sink.close()
    assert len(otlp_receiver.log_records()) == 1
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        sink_from_url("otlp://collector:4318")


@pytest.mark.parametrize("configured", ["argument", "environment"])
def test_the_exporters_own_log_records_lose_the_credentials(
    configured: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exporter record quoting an answer that echoes the request (SDK <= 1.41) loses the header values."""
    token = "SECRETotlpToken8a6f"
    if configured == "environment":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", f"authorization=Bearer%20{token}")
        sink = OTLPLogsSink(OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs"))
    else:
        exporter = OTLPLogExporter(
            endpoint="http://127.0.0.1:9/v1/logs", headers={"authorization": f"Bearer {token}"}
        )
        sink = OTLPLogsSink(exporter)
    logger = logging.getLogger(OTLPLogExporter.__module__)
    answer = f"you sent: POST /v1/logs\r\nauthorization: Bearer {token}\r\n"
    try:
        with caplog.at_level(logging.ERROR, logger=logger.name):
            logger.error("Failed to export logs batch code: %s, reason: %s", 400, answer)
    finally:
        sink.close()
    [record] = caplog.records
    assert token not in record.getMessage() and "code: 400" in record.getMessage()
    logger.error("after close: %s", token)  # the filter goes with the sink
    assert token in caplog.records[-1].getMessage()

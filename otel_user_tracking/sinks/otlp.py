"""OTLPLogsSink: each analytics event as an OpenTelemetry log record, over OTLP.

The OpenTelemetry-native path for large deployments: events ride the Collector pipeline
(``collector-config/``) to Kafka, ClickHouse or any logs backend, next to the traces they
link to. The exporter is the SDK's OTLP/HTTP log exporter, configured by the standard
``OTEL_EXPORTER_OTLP_*`` / ``OTEL_EXPORTER_OTLP_LOGS_*`` variables (endpoint, headers,
timeout, compression, certificates).

Record shape:

* ``event_name`` and the attribute ``event.name``: ``pageview``, ``error`` or the custom name;
* trace id, span id and the sampled flag of the request's server span;
* timestamp: the event's; severity INFO (ERROR for errors); body: a short summary;
* attributes, semantic-convention names where one exists: ``url.scheme``, ``url.path``,
  ``url.query``, ``server.address``, ``http.route``, ``http.request.method``,
  ``http.response.status_code``, ``user_agent.original``, ``client.address``, ``user.id``,
  ``user.name``, ``user.email``, the user's extra fields as ``user.<name>``, ``session.id``,
  ``exception.type``, ``exception.message``, ``exception.stacktrace``; and under
  ``user_tracking.``: ``event.id``, ``event.type``, ``referrer``, ``locale``, ``utm_source``
  ... ``utm_content``, ``visitor_id``, ``duration_ms`` and ``meta.<key>`` for custom event meta.

The records are exported directly (no log SDK pipeline, no global LoggerProvider), so they
never mix with the app's own logging and the sink's pipeline owns batching and retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Optional

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ..analytics.events import FIELDS, AnalyticsEvent
from ..analytics.sink import RetryableSinkError, configuration_identity
from ..sink_urls import SinkURL
from ..version import __version__

PREFIX = "user_tracking."
_SEMCONV = {
    "scheme": "url.scheme",
    "path": "url.path",
    "query": "url.query",
    "host": "server.address",
    "route": "http.route",
    "method": "http.request.method",
    "status_code": "http.response.status_code",
    "user_agent": "user_agent.original",
    "client_address": "client.address",
    **{  # user.id, ...; the extra fields are user.<name> each
        field: field.replace("_", ".", 1)
        for field in FIELDS
        if field.startswith("user_") and field != "user_extra"
    },
    "session_id": "session.id",
    "error_type": "exception.type",
    "error_message": "exception.message",
    "error_stacktrace": "exception.stacktrace",
}
_OURS = (
    "referrer",
    "locale",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "visitor_id",
    "duration_ms",
)


def event_name(event: AnalyticsEvent) -> str:
    return (event.name or "custom") if event.type == "custom" else event.type


def attributes_of(event: AnalyticsEvent) -> dict[str, Any]:
    """The record's attributes (see the module docstring for the names)."""
    values: dict[str, Any] = {
        "event.name": event_name(event),
        PREFIX + "event.id": event.event_id,
        PREFIX + "event.type": event.type,
    }
    for field, key in _SEMCONV.items():
        value = getattr(event, field)
        if value is not None:
            values[key] = value
    for field in _OURS:
        value = getattr(event, field)
        if value is not None:
            values[PREFIX + field] = value
    for name, extra in event.user_extra_fields.items():
        values.setdefault(f"user.{name}", extra)
    for key, value in event.meta.items():
        values[f"{PREFIX}meta.{key}"] = value
    return values


def _body(event: AnalyticsEvent) -> str:
    if event.type == "pageview":
        return f"{event.method or 'GET'} {event.page or '/'} {event.status_code or ''}".strip()
    if event.type == "error":
        return f"{event.error_type or 'Error'}: {event.error_message or ''}".strip()
    return event_name(event)


class OTLPLogsSink:
    """Export events as log records with the OTLP/HTTP log exporter.

    Args:
        exporter: A log record exporter; default ``OTLPLogExporter()`` configured from the
            ``OTEL_EXPORTER_OTLP_*`` environment variables.
        resource: The records' resource; default the global tracer provider's (so
            ``service.name`` matches the traces), else ``Resource.create()``.
    """

    remote = True  # sends over the network: durable delivery goes through the outbox

    name = "otlp-logs"
    max_batch_size = 512

    def __init__(
        self, exporter: Optional[LogRecordExporter] = None, resource: Optional[Resource] = None
    ) -> None:
        self._exporter = exporter if exporter is not None else OTLPLogExporter()
        self._resource = resource
        self._scope = InstrumentationScope("otel_user_tracking", __version__)
        self._redact = _CredentialRedactor(_header_secrets(self._exporter))
        self._exporter_logger = logging.getLogger(type(self._exporter).__module__)
        if self._redact.secrets:
            self._exporter_logger.addFilter(self._redact)

    @cached_property
    def identity(self) -> str:
        """Digest of the exporter's class, endpoint and headers: keys the sink's outbox rows."""
        exporter = self._exporter
        endpoint = str(getattr(exporter, "_endpoint", "") or "")
        kind = f"{type(exporter).__module__}.{type(exporter).__qualname__}"
        return configuration_identity("otlp-logs", kind, endpoint, *sorted(_header_secrets(exporter)))

    def _current_resource(self) -> Resource:
        if self._resource is None:
            provider_resource = getattr(trace.get_tracer_provider(), "resource", None)
            self._resource = (
                provider_resource if isinstance(provider_resource, Resource) else Resource.create()
            )
        return self._resource

    def record(self, event: AnalyticsEvent) -> ReadableLogRecord:
        span_context = SpanContext(
            int(event.trace_id, 16),
            int(event.span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        error = event.type == "error"
        log_record = LogRecord(
            timestamp=int(event.timestamp.timestamp() * 1e9),
            observed_timestamp=time.time_ns(),
            context=trace.set_span_in_context(NonRecordingSpan(span_context)),
            severity_text="ERROR" if error else "INFO",
            severity_number=SeverityNumber.ERROR if error else SeverityNumber.INFO,
            body=_body(event),
            attributes=attributes_of(event),
            event_name=event_name(event),
        )
        return ReadableLogRecord(
            log_record=log_record, resource=self._current_resource(), instrumentation_scope=self._scope
        )

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        result = self._exporter.export([self.record(event) for event in batch])
        if result is not LogRecordExportResult.SUCCESS:
            # The OTLP exporter already retried within its timeout and logged why.
            raise RetryableSinkError(f"{self.name}: the OTLP log export failed")

    def close(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self._exporter_logger.removeFilter(self._redact)

    def __repr__(self) -> str:
        return "OTLPLogsSink()"


class _CredentialRedactor(logging.Filter):
    """Cuts the exporter's header values (credentials) out of its own log records.

    Up to SDK 1.41 the OTLP/HTTP exporters log a refusing backend's answer verbatim, and a
    backend or proxy that echoes the request would put the ``Authorization`` value there.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        kept = {secret for secret in secrets if len(secret) >= 4}
        self.secrets = tuple(sorted(kept, key=len, reverse=True))  # longest first: no partial cuts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, ()
        return True


def _header_secrets(exporter: object) -> list[str]:
    """The values of the exporter's configured headers (and the token of ``Bearer <token>``)."""
    client = getattr(exporter, "_client", None)  # SDK 1.42+ keeps them on its HTTP client
    headers = getattr(exporter, "_headers", None) or getattr(client, "_headers", None)
    values = [str(value) for value in dict(headers or {}).values()]
    return values + [value.split(" ", 1)[1] for value in values if " " in value]


def from_url(parsed: SinkURL) -> OTLPLogsSink:
    """``otlp``: endpoint, headers and the rest from the ``OTEL_EXPORTER_OTLP_*`` variables."""
    if parsed.host or parsed.path:
        raise parsed.error("configure the endpoint with OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, not in the URL")
    return OTLPLogsSink()

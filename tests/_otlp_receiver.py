"""An OTLP/HTTP receiver on 127.0.0.1 for end-to-end tests: decodes what exporters send.

Usage::

    with OTLPReceiver() as receiver:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.traces_endpoint
        ...
        receiver.wait_for(lambda r: len(r.spans(kind="SERVER")) >= 3)
        assert all(b"127.0.0.3" not in body for body in receiver.raw_bodies())

Every request body is kept raw (after gunzip) as well as decoded with ``opentelemetry-proto``,
so a test can scan the exported bytes for a value that must never leave the process.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import urlsplit

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

T = TypeVar("T")

TRACES = "/v1/traces"
LOGS = "/v1/logs"
METRICS = "/v1/metrics"
_MESSAGES: dict[str, tuple[type[Message], type[Message]]] = {
    TRACES: (ExportTraceServiceRequest, ExportTraceServiceResponse),
    LOGS: (ExportLogsServiceRequest, ExportLogsServiceResponse),
    METRICS: (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as exported."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as exported, with plain Python values (arrays become lists)."""

    name: str
    kind: str  # "SERVER", "INTERNAL", ...
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    status_code: str  # "UNSET", "OK" or "ERROR"
    scope: str  # the instrumentation scope (tracer) name
    resource: dict[str, Any]

    def events_named(self, name: str) -> list[ReceivedEvent]:
        return [event for event in self.events if event.name == name]


@dataclass(frozen=True)
class ReceivedLogRecord:
    """A log record as exported."""

    body: Any
    severity_text: str
    severity_number: int
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    scope: str
    event_name: str = ""
    time_unix_nano: int = 0


def any_value(value: AnyValue) -> Any:
    """The plain Python value of an OTLP ``AnyValue``."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    return getattr(value, which)


def attributes_dict(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def span_path(span: ReceivedSpan) -> str:
    """The request path of a server span, under either HTTP semantic convention (from the full
    URL where a span has no target: contrib's WSGI spans on servers that set no ``RAW_URI``)."""
    target = span.attributes.get("url.path") or span.attributes.get("http.target")
    if not target:
        return urlsplit(str(span.attributes.get("url.full") or span.attributes.get("http.url") or "")).path
    return str(target).split("?", 1)[0]


def describe_spans(spans: list[ReceivedSpan]) -> str:
    """One line per span, for assertion messages."""
    return "\n".join(
        f"  {span.kind} {span.name!r} scope={span.scope} path={span_path(span)!r} "
        f"status={span.status_code} attributes={span.attributes} "
        f"events={[event.name for event in span.events]}"
        for span in spans
    )


def _kind(span: Span) -> str:
    return str(Span.SpanKind.Name(span.kind)).removeprefix("SPAN_KIND_")


def _status(span: Span) -> str:
    return str(Status.StatusCode.Name(span.status.code)).removeprefix("STATUS_CODE_")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self._read_body()
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding", "").lower() == "deflate":
            body = zlib.decompress(body)
        path = self.path.split("?", 1)[0]
        messages = _MESSAGES.get(path)
        if messages is None:
            self._reply(404, b"")
            self.server.receiver._record(path, body, None, f"unknown path {path}")
            return
        request_type, response_type = messages
        try:
            decoded = request_type.FromString(body)
        except DecodeError as exc:
            self.server.receiver._record(path, body, None, f"{path}: undecodable body ({exc})")
            self._reply(400, b"")
            return
        self.server.receiver._record(path, body, decoded, None)
        failing = self.server.receiver.fail_with
        if failing:
            self._reply(failing, b"")
            return
        self._reply(200, response_type().SerializeToString())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OTLPReceiver


class OTLPReceiver:
    """Receives OTLP/HTTP protobuf exports on 127.0.0.1 in a daemon thread.

    Usage: ``with OTLPReceiver() as receiver:`` then point an exporter at
    ``receiver.traces_endpoint`` (or ``receiver.endpoint`` for all signals).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._condition = threading.Condition(threading.RLock())
        self._received: list[tuple[str, bytes, Optional[Message]]] = []
        self.errors: list[str] = []
        self.fail_with = 0  # non-zero: answer every export with this HTTP status
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        assert self._server is not None, "the receiver is not started"
        return f"http://{self._host}:{self._server.server_address[1]}"

    @property
    def traces_endpoint(self) -> str:
        return self.endpoint + TRACES

    @property
    def logs_endpoint(self) -> str:
        return self.endpoint + LOGS

    @property
    def metrics_endpoint(self) -> str:
        return self.endpoint + METRICS

    def start(self) -> OTLPReceiver:
        server = _Server((self._host, 0), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, path: str, body: bytes, decoded: Optional[Message], error: Optional[str]) -> None:
        with self._condition:
            self._received.append((path, body, decoded))
            if error is not None:
                self.errors.append(error)
            self._condition.notify_all()

    def _decoded(self, path: str) -> list[Any]:
        with self._condition:
            return [message for got, _, message in self._received if got == path and message is not None]

    def export_requests(self, path: str = TRACES) -> list[Any]:
        """The decoded ``Export*ServiceRequest`` messages received on ``path``, in order."""
        return self._decoded(path)

    def raw_bodies(self, path: Optional[str] = None) -> list[bytes]:
        """Every request body received (on ``path`` if given), uncompressed, in order."""
        with self._condition:
            return [body for got, body, _ in self._received if path is None or got == path]

    def spans(self, kind: Optional[str] = None) -> list[ReceivedSpan]:
        """All exported spans, in arrival order; only those of ``kind`` ("SERVER", ...) if given."""
        found = []
        for request in self._decoded(TRACES):
            for resource_spans in request.resource_spans:
                resource = attributes_dict(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received = ReceivedSpan(
                            name=span.name,
                            kind=_kind(span),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes_dict(span.attributes),
                            events=tuple(
                                ReceivedEvent(event.name, attributes_dict(event.attributes))
                                for event in span.events
                            ),
                            status_code=_status(span),
                            scope=scope_spans.scope.name,
                            resource=resource,
                        )
                        if kind is None or received.kind == kind:
                            found.append(received)
        return found

    def log_records(self) -> list[ReceivedLogRecord]:
        """All exported log records, in arrival order."""
        found = []
        for request in self._decoded(LOGS):
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        found.append(
                            ReceivedLogRecord(
                                body=any_value(record.body),
                                severity_text=record.severity_text,
                                severity_number=int(record.severity_number),
                                attributes=attributes_dict(record.attributes),
                                trace_id=record.trace_id.hex(),
                                span_id=record.span_id.hex(),
                                scope=scope_logs.scope.name,
                                event_name=record.event_name,
                                time_unix_nano=record.time_unix_nano,
                            )
                        )
        return found

    def wait_for(self, predicate: Callable[[OTLPReceiver], T], timeout: float = 10.0) -> T:
        """Block until ``predicate(receiver)`` is truthy (checked on each request) and return it.

        Raises AssertionError with a summary of what arrived when ``timeout`` seconds pass.
        """
        with self._condition:
            result = self._condition.wait_for(lambda: predicate(self), timeout=timeout)
            if not result:
                raise AssertionError(f"OTLP receiver: condition not met in {timeout}s; {self.summary()}")
            return result

    def summary(self) -> str:
        """What arrived so far, for failure messages."""
        with self._condition:
            paths = [path for path, _, _ in self._received]
            spans = [f"{span.kind} {span.name!r} ({span.scope})" for span in self.spans()]
            return f"{len(paths)} requests {paths}, spans: {spans}, errors: {self.errors}"

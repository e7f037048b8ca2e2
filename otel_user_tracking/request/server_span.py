"""Making the SERVER span in one pass, policy-clean from its first attribute.

Built from ``opentelemetry-instrumentation-asgi``'s pieces (context extraction, semconv mode,
header capture; request attributes, span name and status mapping through ``semconv.py``,
which computes what the contrib helpers do at a fifth of their cost and proves it against
them), so the span looks exactly like the ASGI middleware's. Doing it here rather than through
the middleware's ``__call__`` means the client address and raw query never touch the span (no
span processor's ``on_start`` sees them) and attributes are set once instead of twice.
``internal_spans=True`` uses the full ASGI middleware instead.

The standard ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` /
``_SERVER_RESPONSE`` / ``_SANITIZE_FIELDS`` variables work as on the contrib middleware's
span, and every captured value goes through the same policy (``scrubbing.py``).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Optional
from urllib.parse import quote_from_bytes

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
)
from opentelemetry.instrumentation.asgi import asgi_getter, collect_custom_headers_attributes
from opentelemetry.metrics import get_meter
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    SanitizeValue,
    get_custom_headers,
    normalise_request_header_name,
    normalise_response_header_name,
)

from .._errors import report_internal_error
from ..env import OTEL_FRAMEWORK_EXCLUDED_URLS, otel_excluded_urls
from ..types import Message, Scope, Send
from ..version import __version__
from .scrubbing import QueryScrubber, clean_attributes, enforce_on_span
from .semconv import HttpSemconv
from .server_metrics import HttpServerMetrics, content_length

_logger = logging.getLogger(__name__)
_RESPONSE_STARTS = ("http.response.start", "websocket.accept")  # the messages with response headers
_ASGI_GETTER: Any = asgi_getter  # a Getter[dict]; scopes are typed as mutable mappings


class ServerSpanMaker:
    """Starts, finishes and measures SERVER spans for one tracer and meter provider."""

    excluded_url_variables: tuple[str, ...] = OTEL_FRAMEWORK_EXCLUDED_URLS

    def __init__(self, tracer_provider: Optional[trace.TracerProvider], meter_provider: Any) -> None:
        _OpenTelemetrySemanticConventionStability._initialize()
        self.mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
            _OpenTelemetryStabilitySignalType.HTTP
        )
        self.semconv = HttpSemconv(self.mode)
        schema_url = _get_schema_url(self.mode)
        self.tracer = trace.get_tracer(
            "otel_user_tracking", __version__, tracer_provider, schema_url=schema_url
        )
        meter = get_meter("otel_user_tracking", __version__, meter_provider, schema_url=schema_url)
        self.metrics = HttpServerMetrics(meter, self.mode)
        self.active = self.metrics.active
        self.capture_request = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST)
        self.capture_response = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)
        self.sanitize = SanitizeValue(
            get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
        )
        self.excluded = _compiled(otel_excluded_urls(variables=self.excluded_url_variables))

    def is_excluded(self, url: str) -> bool:
        """True when one of OpenTelemetry's own excluded-URL variables matches ``url``."""
        return any(pattern.search(url) for pattern in self.excluded)

    def start(
        self, scope: Scope, clean: Callable[[dict[str, Any]], dict[str, Any]], outside: Context
    ) -> tuple[trace.Span, Optional[object], Optional[dict[str, Any]]]:
        """Start the span with the ASGI middleware's attributes after ``clean`` applied the policy,
        and make it current.

        ``outside`` is the context current when the request came in (the middleware read it already).
        Returns the span, the context token to detach, and the metric attributes (None: the
        request's metrics are not recorded, no meter provider is set).
        """
        try:
            return self._start(scope, clean, outside)
        except (UnicodeDecodeError, IndexError, TypeError, ValueError):
            # The helpers decode the query and headers and index ``client``; servers pass anything.
            return self._start(_well_formed(scope), clean, outside)

    def _start(
        self, scope: Scope, clean: Callable[[dict[str, Any]], dict[str, Any]], outside: Context
    ) -> tuple[trace.Span, Optional[object], Optional[dict[str, Any]]]:
        attributes = self.semconv.request_attributes(scope)
        name = self.semconv.span_name(scope)
        if self.capture_request:
            attributes.update(self._capture(scope, self.capture_request, normalise_request_header_name))
        cleaned = clean(attributes)
        span, token = self.open_span(name, cleaned, outside, scope, _ASGI_GETTER)
        if scope["type"] != "http" or not self.metrics.recording():
            return span, token, None
        self.active.add(1, self.metrics.active_attributes(cleaned))
        return span, token, cleaned

    def open_span(
        self, name: str, attributes: dict[str, Any], outside: Context, carrier: Any, getter: Any
    ) -> tuple[trace.Span, object]:
        """Start the span and make it current, as the contrib ``_start_internal_or_server_span``
        does: a SERVER span continuing the trace propagated in ``carrier``, or INTERNAL under a
        span already current. The context made current holds the span itself, so the request
        needs one attach (``use_span`` would add another)."""
        if trace.get_current_span(outside) is trace.INVALID_SPAN:
            parent = propagate.extract(carrier, getter=getter)
            kind = SpanKind.SERVER
        else:
            parent = outside
            kind = SpanKind.INTERNAL
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        return span, context.attach(trace.set_span_in_context(span, parent))

    def police_response_headers(
        self, span: trace.Span, send: Send, scrubber: QueryScrubber, ours: bool
    ) -> Send:
        """``send``, capturing (on our span) and policing the response headers, if any are captured.

        Another layer sets its captured response headers while the response starts, outside
        this middleware, so they are policed once that ``send`` returns.
        """
        if not self.capture_response:
            return send

        async def send_policed(message: Message) -> None:
            starting = message.get("type") in _RESPONSE_STARTS
            if starting and ours:
                try:
                    captured = self._capture(message, self.capture_response, normalise_response_header_name)
                    span.set_attributes(clean_attributes(captured, (), scrubber))
                except Exception as exc:
                    report_internal_error("response_headers", exc)
            await send(message)
            if starting and not ours:
                try:
                    span.set_attributes(enforce_on_span(span, (), scrubber))
                except Exception as exc:
                    report_internal_error("response_headers", exc)

        return send_policed

    def _capture(
        self, holder: Scope, patterns: list[str], normalise: Callable[[str], str]
    ) -> dict[str, list[str]]:
        """The captured headers of a scope or response message, whatever bytes they hold."""
        try:
            return collect_custom_headers_attributes(holder, self.sanitize, patterns, normalise)  # type: ignore[arg-type]
        except (UnicodeDecodeError, TypeError, ValueError):
            well_formed = {"headers": _well_formed_headers(holder.get("headers"))}
            return collect_custom_headers_attributes(well_formed, self.sanitize, patterns, normalise)

    def end(
        self,
        span: trace.Span,
        token: Optional[object],
        scope: Scope,
        metric_attributes: Optional[dict[str, Any]],
        started: float,
        status: Optional[int],
        route: Optional[str],
        response_size: Optional[int] = None,
    ) -> None:
        """End the span (unless it ended at the last response message), restore the context and
        record the request's metrics, from ``metric_attributes`` (the request attributes ``start``
        returned; None: none are recorded) as the contrib middleware records them: after the app
        returned."""
        if metric_attributes is not None and scope["type"] == "http":
            self.active.add(-1, self.metrics.active_attributes(metric_attributes))
            self.metrics.record(
                metric_attributes,
                status=status,
                route=route,
                seconds=time.perf_counter() - started,
                request_size=content_length(scope.get("headers")),
                response_size=response_size,
                context=None,  # the current one, which holds the span until ``token`` is detached below
            )
        if token is not None:
            context.detach(token)  # type: ignore[arg-type]
        if span.is_recording():
            span.end()


def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """The patterns as regexes; one that is no regex is logged and left out (contrib's own
    instrumentations would fail to start on it, but the variable is not ours to enforce)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            _logger.warning("otel_user_tracking: excluded URL %r is not a regex (%s); ignored", pattern, exc)
    return tuple(compiled)


def _well_formed(scope: Scope) -> Scope:
    """A copy of ``scope`` with an ASCII query (other bytes percent-encoded) and a sane ``client``."""
    query = bytes(scope.get("query_string") or b"")
    client = scope.get("client")
    if not (isinstance(client, (tuple, list)) and len(client) == 2 and isinstance(client[0], str)):
        client = None
    encoded = quote_from_bytes(query, safe="/?&=;:+,%@!$'()*[]~").encode("ascii")
    headers = _well_formed_headers(scope.get("headers"))
    return {**scope, "query_string": encoded, "client": client, "headers": headers}


def _well_formed_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """Header pairs as valid UTF-8 (bad bytes become U+FFFD); the ASGI helpers decode every name.

    Their fallback for non-UTF-8 bytes, ``unicode_escape``, fails on a trailing backslash.
    """
    fixed: list[tuple[bytes, bytes]] = []
    for pair in headers or ():
        try:
            name, value = pair
            fixed.append((_utf8(name), _utf8(value)))
        except (TypeError, ValueError):
            continue
    return fixed


def _utf8(raw: Any) -> bytes:
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("a header item must be bytes")
    return bytes(raw).decode("utf-8", "replace").encode("utf-8")

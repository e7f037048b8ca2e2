"""Making a WSGI request's SERVER span in one pass, policy-clean from its first attribute.

Built from ``opentelemetry-instrumentation-wsgi``'s helpers (``collect_request_attributes`` and
``get_default_span_name`` through ``wsgi_semconv.py``, which computes what they do at a fraction
of their cost and proves it against them; context extraction with ``wsgi_getter``), so the span
looks like the contrib WSGI middleware's; the status, the metrics and the header capture are the ASGI span
maker's (``server_span.py``), which name and map them as both contrib middlewares do. As on
the ASGI side, the client address and the raw query never touch the span: the policy applies
to the attributes before the span starts.
"""

from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import quote

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation import wsgi as contrib
from opentelemetry.instrumentation._semconv import _report_new, _report_old
from opentelemetry.util.http import normalise_request_header_name, normalise_response_header_name

from ..env import OTEL_WSGI_FRAMEWORK_EXCLUDED_URLS
from ..types import Environ
from .server_span import ServerSpanMaker
from .wsgi_semconv import WSGISemconv

_WSGI_GETTER: Any = contrib.wsgi_getter
_HTTP_SCOPE = {"type": "http"}  # what ``ServerSpanMaker.end`` reads to record the HTTP metrics
_HEADER_PREFIX = "HTTP_"


class WSGISpanMaker(ServerSpanMaker):
    """Starts, finishes and measures the SERVER spans of WSGI requests for one provider pair."""

    excluded_url_variables = OTEL_WSGI_FRAMEWORK_EXCLUDED_URLS

    def __init__(self, tracer_provider: Optional[trace.TracerProvider], meter_provider: Any) -> None:
        super().__init__(tracer_provider, meter_provider)
        self.wsgi_semconv = WSGISemconv(self.semconv)

    def start_wsgi(
        self, environ: Environ, clean: Callable[[dict[str, Any]], dict[str, Any]], outside: Context
    ) -> tuple[trace.Span, Optional[object], Optional[dict[str, Any]]]:
        """Start the span with the contrib WSGI middleware's attributes after ``clean`` applied
        the policy, and make it current (``open_span``); returns the span, the token to
        detach, the metric attributes (None: not recorded, no meter provider is set)."""
        attributes = self.wsgi_semconv.request_attributes(environ)
        if environ.get("RAW_URI") is None and not environ.get("REQUEST_URI"):
            self._add_target(attributes, environ)
        name = self.wsgi_semconv.span_name(environ)
        if self.capture_request and trace.get_current_span(outside) is trace.INVALID_SPAN:
            attributes.update(self.request_headers(environ))  # a SERVER span's only, as contrib
        cleaned = clean(attributes)
        span, token = self.open_span(name, cleaned, outside, environ, _WSGI_GETTER)
        if not self.metrics.recording():
            return span, token, None
        self.active.add(1, self.metrics.active_attributes(cleaned))
        return span, token, cleaned

    def _add_target(self, attributes: dict[str, Any], environ: Environ) -> None:
        """The request target from ``PATH_INFO`` and ``QUERY_STRING``, for servers that set no
        ``RAW_URI``/``REQUEST_URI`` (wsgiref): contrib then sets neither ``http.target`` nor
        ``url.path``, which the ASGI side's spans always carry and the analytics read."""
        path = quote(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")), safe="/;=,%")
        query = str(environ.get("QUERY_STRING", ""))
        if _report_old(self.mode):
            attributes["http.target"] = path + "?" + query if query else path
        if _report_new(self.mode):
            attributes["url.path"] = path
            if query:
                attributes["url.query"] = query

    def request_headers(self, environ: Environ) -> dict[str, Any]:
        """The captured request headers (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``),
        as ``collect_custom_request_headers_attributes`` reads them, without re-reading the
        environment variables on every request."""
        headers = {
            key[len(_HEADER_PREFIX) :].replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith(_HEADER_PREFIX)
        }
        found: dict[str, Any] = self.sanitize.sanitize_header_values(
            headers, self.capture_request, normalise_request_header_name
        )
        return found

    def response_headers(self, headers: Any) -> dict[str, Any]:
        """The captured response headers, as ``collect_custom_response_headers_attributes`` reads them."""
        joined: dict[str, str] = {}
        for name, value in headers or ():
            key = str(name).lower()
            joined[key] = joined[key] + "," + str(value) if key in joined else str(value)
        found: dict[str, Any] = self.sanitize.sanitize_header_values(
            joined, self.capture_response, normalise_response_header_name
        )
        return found

    def end_wsgi(
        self,
        span: trace.Span,
        token: Optional[object],
        metric_attributes: Optional[dict[str, Any]],
        started: float,
        status: Optional[int],
        route: Optional[str],
    ) -> None:
        """End the span, restore the context and record the request's metrics (none for None)."""
        self.end(span, token, _HTTP_SCOPE, metric_attributes, started, status, route)


def status_code(status: Any) -> Optional[int]:
    """The code of a WSGI status line (``"404 Not Found"``), or None if it has none."""
    try:
        return int(str(status).split(" ", 1)[0])
    except ValueError:
        return None

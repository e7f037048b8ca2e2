"""The HTTP server metrics the contrib ASGI and WSGI middlewares record, in every semconv mode.

``OTEL_SEMCONV_STABILITY_OPT_IN`` unset (the old convention): ``http.server.duration`` (ms),
``http.server.request.size`` and ``http.server.response.size``; ``http``: the stable
``http.server.request.duration`` (s), ``http.server.request.body.size`` and
``http.server.response.body.size``; ``http/dup``: both sets. ``http.server.active_requests``
in every mode, with the attributes of the mode(s). Each metric's attributes are taken from the
span's request attributes after the policy applied to them, so a metric carries nothing the
span may not.
"""

from __future__ import annotations

from typing import Any, Optional

from opentelemetry.context import Context
from opentelemetry.instrumentation._semconv import (
    _report_new,
    _report_old,
    _server_active_requests_count_attrs_new,
    _server_active_requests_count_attrs_old,
    _server_duration_attrs_new,
    _server_duration_attrs_old,
)

try:
    from opentelemetry.instrumentation._semconv import HTTP_DURATION_HISTOGRAM_BUCKETS_NEW
except ImportError:  # opentelemetry-instrumentation < 0.52b0
    HTTP_DURATION_HISTOGRAM_BUCKETS_NEW = (  # type: ignore[assignment]
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    )  # fmt: skip

_CONTENT_LENGTH = b"content-length"


class HttpServerMetrics:
    """The instruments of one semconv mode on one meter, and how a request is recorded on them.

    Args:
        meter: The meter the instruments are created on.
        mode: The HTTP semantic-convention opt-in mode.
    """

    def __init__(self, meter: Any, mode: Any) -> None:
        self.old = _report_old(mode)
        self.new = _report_new(mode)
        active_keys: list[str] = []
        if self.old:
            active_keys += _server_active_requests_count_attrs_old
        if self.new:
            active_keys += _server_active_requests_count_attrs_new
        self._active_keys = tuple(dict.fromkeys(active_keys))
        self._old_keys = tuple(_server_duration_attrs_old)
        self._new_keys = tuple(_server_duration_attrs_new)
        self.active = meter.create_up_down_counter(
            "http.server.active_requests",
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        self.duration_old = self.request_size_old = self.response_size_old = None
        self.duration_new = self.request_size_new = self.response_size_new = None
        if self.old:
            self.duration_old = meter.create_histogram(
                "http.server.duration",
                unit="ms",
                description="Measures the duration of inbound HTTP requests.",
            )
            self.request_size_old = meter.create_histogram(
                "http.server.request.size",
                unit="By",
                description="Measures the size of HTTP request messages (compressed).",
            )
            self.response_size_old = meter.create_histogram(
                "http.server.response.size",
                unit="By",
                description="measures the size of HTTP response messages (compressed).",
            )
        if self.new:
            self.duration_new = meter.create_histogram(
                "http.server.request.duration",
                unit="s",
                description="Duration of HTTP server requests.",
                explicit_bucket_boundaries_advisory=HTTP_DURATION_HISTOGRAM_BUCKETS_NEW,
            )
            self.request_size_new = meter.create_histogram(
                "http.server.request.body.size", unit="By", description="Size of HTTP server request bodies."
            )
            self.response_size_new = meter.create_histogram(
                "http.server.response.body.size",
                unit="By",
                description="Size of HTTP server response bodies.",
            )

    def recording(self) -> bool:
        """False while the instruments are the API's proxies with no meter provider behind them
        yet (none was set): what they are given goes nowhere, so a request computes nothing for
        them. Decided per request (a provider may be set later); any other meter records."""
        return getattr(self.active, "_real_instrument", self) is not None

    def active_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The attributes ``http.server.active_requests`` carries for a request."""
        return {key: attributes[key] for key in self._active_keys if key in attributes}

    def record(
        self,
        attributes: dict[str, Any],
        *,
        status: Optional[int],
        route: Optional[str],
        seconds: float,
        request_size: Optional[int],
        response_size: Optional[int],
        context: Optional[Context],
    ) -> None:
        """Record one finished request: its duration and, where known, its sizes."""
        if self.old:
            old = {key: attributes[key] for key in self._old_keys if key in attributes}
            if status:
                old["http.status_code"] = status
            if route:
                old["http.target"] = route
            self.duration_old.record(max(round(seconds * 1000), 0), old, context=context)  # type: ignore[union-attr]
            if request_size:
                self.request_size_old.record(request_size, old, context=context)  # type: ignore[union-attr]
            if response_size:
                self.response_size_old.record(response_size, old, context=context)  # type: ignore[union-attr]
        if self.new:
            new = {key: attributes[key] for key in self._new_keys if key in attributes}
            if status:
                new["http.response.status_code"] = status
                if status >= 500:
                    new["error.type"] = str(status)
            if route:
                new["http.route"] = route
            self.duration_new.record(max(seconds, 0.0), new, context=context)  # type: ignore[union-attr]
            if request_size:
                self.request_size_new.record(request_size, new, context=context)  # type: ignore[union-attr]
            if response_size:
                self.response_size_new.record(response_size, new, context=context)  # type: ignore[union-attr]


def content_length(headers: Any) -> Optional[int]:
    """The ``content-length`` of ASGI header pairs (any case), or None."""
    for pair in headers or ():
        name = pair[0]
        if len(name) == 14 and bytes(name).lower() == _CONTENT_LENGTH:
            try:
                return int(pair[1])
            except (TypeError, ValueError):
                return None
    return None

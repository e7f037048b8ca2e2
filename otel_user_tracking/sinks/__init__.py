"""Analytics sinks: one module per backend, and the ``OTEL_PYTHON_USER_TRACKING_SINKS`` URL parser."""

from __future__ import annotations

from ._base import PermanentSinkError, RetryableSinkError, Sink, SinkError
from ._url import SinkURL, mask_url, parse_sink_url, sink_from_url, sinks_from_env

__all__ = [
    "PermanentSinkError",
    "RetryableSinkError",
    "Sink",
    "SinkError",
    "SinkURL",
    "mask_url",
    "parse_sink_url",
    "sink_from_url",
    "sinks_from_env",
]

"""Analytics sinks: one module per backend, and the ``OTEL_PYTHON_USER_TRACKING_SINKS`` URL parser."""

from __future__ import annotations

from ._base import PermanentSinkError, RetryableSinkError, Sink, SinkError
from ._url import SinkURL, mask_url, parse_sink_url, sink_from_url, sinks_from_env
from .console import ConsoleSink
from .jsonl import JSONLinesSink
from .memory import InMemorySink
from .sqlite import SQLiteSink

__all__ = [
    "ConsoleSink",
    "InMemorySink",
    "JSONLinesSink",
    "PermanentSinkError",
    "RetryableSinkError",
    "SQLiteSink",
    "Sink",
    "SinkError",
    "SinkURL",
    "mask_url",
    "parse_sink_url",
    "sink_from_url",
    "sinks_from_env",
]

"""Analytics sinks: one module per backend; the contract (``analytics/sink.py``) and the
``OTEL_PYTHON_USER_TRACKING_SINKS`` URL parser (``sink_urls.py``) re-exported for users.

The backends that bring heavier imports (HTTP clients, the OTLP exporter) load on first use,
so ``import otel_user_tracking`` stays light: ``out.sinks.PostHogSink`` imports
``sinks/posthog.py`` the first time it is read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..analytics.sink import PermanentSinkError, RetryableSinkError, SendResult, Sink, SinkError
from ..sink_urls import SinkURL, mask_url, parse_sink_url, sink_from_url, sinks_from_env
from ..store.sqlite.sink import SQLiteSink
from .console import ConsoleSink
from .jsonl import JSONLinesSink
from .memory import InMemorySink

if TYPE_CHECKING:
    from ..store.postgres.sink import PostgreSQLSink
    from .otlp import OTLPLogsSink
    from .posthog import PostHogSink
    from .segment import SegmentSink
    from .swetrix import SwetrixSink
    from .webhook import WebhookSink

_LAZY = {  # module relative to this package
    "OTLPLogsSink": ".otlp",
    "PostHogSink": ".posthog",
    "PostgreSQLSink": "..store.postgres.sink",
    "SegmentSink": ".segment",
    "SwetrixSink": ".swetrix",
    "WebhookSink": ".webhook",
}

__all__ = [
    "ConsoleSink",
    "InMemorySink",
    "JSONLinesSink",
    "OTLPLogsSink",
    "PermanentSinkError",
    "PostHogSink",
    "PostgreSQLSink",
    "RetryableSinkError",
    "SQLiteSink",
    "SegmentSink",
    "SendResult",
    "Sink",
    "SinkError",
    "SinkURL",
    "SwetrixSink",
    "WebhookSink",
    "mask_url",
    "parse_sink_url",
    "sink_from_url",
    "sinks_from_env",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value

"""ConsoleSink: one JSON line per event on stdout (or any text stream), for development."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import Optional, TextIO

from ..analytics.events import AnalyticsEvent
from ..sink_urls import SinkURL


class ConsoleSink:
    """Print each event as compact JSON; the stream is looked up at send time by default,
    so output redirected after start-up (pytest's capture, a supervisor) is honoured."""

    name = "console"
    max_batch_size = 500
    remote = False

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        stream = self._stream or sys.stdout
        text = "".join(
            json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n" for event in batch
        )
        with self._lock:
            stream.write(text)
            stream.flush()

    def close(self) -> None:
        return None


def from_url(parsed: SinkURL) -> ConsoleSink:
    return ConsoleSink()

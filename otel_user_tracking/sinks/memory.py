"""InMemorySink: keeps events in a list, for users' own tests of their analytics."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..analytics.events import AnalyticsEvent
from ..sink_urls import SinkURL


class InMemorySink:
    """Collects every delivered event; ``wait_for(n)`` blocks until n have arrived.

    Usage in a test::

        sink = InMemorySink()
        provider.add_span_processor(AnalyticsSpanProcessor(sinks=[sink]))
        ... make requests ...
        processor.force_flush()
        assert [e.type for e in sink.events] == ["pageview"]
    """

    name = "memory"
    max_batch_size = 1000
    remote = False

    def __init__(self, *, filtered: bool = False) -> None:
        self.takes_filtered = filtered  # also the ``filtered`` events of bots' and scripts' requests
        self._events: list[AnalyticsEvent] = []
        self._changed = threading.Condition()

    @property
    def events(self) -> list[AnalyticsEvent]:
        """A copy of the events delivered so far, in delivery order."""
        with self._changed:
            return list(self._events)

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        with self._changed:
            self._events.extend(batch)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[AnalyticsEvent]:
        """The events once at least ``count`` arrived; ``TimeoutError`` saying how many did."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._events) >= count, timeout):
                raise TimeoutError(f"{len(self._events)} of {count} events arrived within {timeout}s")
            return list(self._events)

    def clear(self) -> None:
        with self._changed:
            self._events.clear()

    def close(self) -> None:
        return None


def from_url(parsed: SinkURL) -> InMemorySink:
    return InMemorySink()

"""The request path's hand-off to analytics: a bounded span queue and the thread that converts.

``put`` runs in ``on_end``, on the request path: a deque append under a lock and, at most
once per batch, a notify. One converter thread per processor turns the queued spans into
events once (not once per sink) and offers them to every sink's pipeline, so spans are
held only briefly: what waits for a slow or dead backend is the compact events, and a
backend that hangs never stops the conversion for the others.

The converter works in slices and steps aside between them (``_workers.py``), so the
event loop serving requests never waits for it for more than one slice.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from typing import Callable

from opentelemetry.sdk.trace import ReadableSpan

from .._errors import report_internal_error
from .._workers import TimeSlicer, WorkerState, wait_for
from ..config import Config
from .events import EventRow
from .pipeline import SinkPipeline
from .settings import DeliverySettings

_logger = logging.getLogger(__name__)

Item = tuple[ReadableSpan, Config]
Convert = Callable[[ReadableSpan, Config], Sequence[EventRow]]

MAX_WAIT = 0.5  # seconds a queued span waits at most before conversion
TAKE = 64  # spans the converter takes from the queue at a time, converts and hands over
# A finished span holds ~3.4 KB (its attribute dict, event and link deques), five times its
# events: the span queue is kept short, and what waits for a backend is the events.
MAX_SPANS = 1024


class SpanIntake(WorkerState):
    """Queue finished spans; a converter thread turns them into events for the pipelines.

    Args:
        pipelines: The sinks' pipelines every event is offered to.
        settings: ``max_queue_size`` (at most ``MAX_SPANS``) bounds the span queue;
            ``flush_at`` wakes the converter.
        convert: Span and its app's Config to event rows (``conversion.event_rows``).
    """

    def __init__(
        self, pipelines: Sequence[SinkPipeline], settings: DeliverySettings, convert: Convert
    ) -> None:
        self._pipelines = list(pipelines)
        self._convert = convert
        self._max_items = min(settings.max_queue_size, MAX_SPANS)
        self._wake_at = max(1, min(settings.flush_at, 512))
        self._interval = min(settings.flush_interval, MAX_WAIT)
        self._reset_state()

    def _reset_state(self) -> None:
        self._reset_worker()
        self._items: collections.deque[Item] = collections.deque()
        self._converting = 0
        self._slicer = TimeSlicer()

    # -- request path -------------------------------------------------------------------

    def put(self, item: Item) -> None:
        """Queue a finished span; when the queue is full it is dropped and counted."""
        with self._lock:
            if self._stopping or len(self._items) >= self._max_items:
                refused = True
            else:
                refused = False
                self._items.append(item)
                if self._thread is None:
                    self._start_worker("convert")
                if len(self._items) == self._wake_at:
                    self._wake.notify()
        if refused:
            events = 1 + len(item[0].events)  # the pageview and its span events, unconverted
            for pipeline in self._pipelines:
                pipeline.count_lost(events, f"span queue full ({self._max_items} spans) or shut down")

    # -- control ------------------------------------------------------------------------

    def flush(self, deadline: float) -> bool:
        """Convert everything queued now and hand it to the pipelines; False past ``deadline``."""
        with self._lock:
            if self._thread is None or (not self._items and not self._converting):
                return True
            self._flush_requested += 1
            ticket = self._flush_requested
            self._wake.notify()
            return wait_for(self._idle, lambda: self._flush_done >= ticket, deadline)

    def stop(self, deadline: float) -> bool:
        """Convert what is queued, then refuse new spans; False past ``deadline``."""
        done = self.flush(deadline)
        with self._lock:
            self._stopping = True
            leftover = list(self._items)
            self._items.clear()
            self._wake.notify()
        for span, _ in leftover:
            for pipeline in self._pipelines:
                pipeline.count_lost(1 + len(span.events), "still unconverted at shutdown")
        return done and not leftover

    def after_fork(self) -> None:
        """In a forked child the converter thread is gone and locks may be held: start clean."""
        self._reset_state()

    # -- converter ----------------------------------------------------------------------

    def _recover(self) -> bool:
        with self._lock:
            self._converting = 0  # what it was converting was offered, or is lost with the crash
        return True

    def _work(self) -> None:
        backlog = False
        while True:
            with self._lock:
                if not backlog:
                    self._wait_for_work(self._items, self._wake_at, self._interval)
                if self._stopping and not self._items:
                    return
                items = [self._items.popleft() for _ in range(min(len(self._items), TAKE))]
                self._converting = len(items)
                ticket = self._flush_requested
            self._convert_all(items)
            with self._lock:
                self._converting = 0
                backlog = bool(self._items)
                if not backlog:
                    self._flush_done = max(self._flush_done, ticket)
                    self._idle.notify_all()

    def _convert_all(self, items: list[Item]) -> None:
        """Convert up to ``TAKE`` spans and offer their events to every pipeline."""
        if not any(pipeline.has_room() for pipeline in self._pipelines):
            # Every sink's queue is full (a dead backend): converting would only feed drops.
            lost = sum(1 + len(span.events) for span, _ in items)
            for pipeline in self._pipelines:
                pipeline.count_lost(lost, "the sink's queue is full")
            return
        convert = self._convert
        slicer = self._slicer
        slicer.restart()
        events: list[EventRow] = []
        for span, config in items:
            slicer.tick()
            try:
                events.extend(convert(span, config))
            except Exception as exc:
                # Never raised here: it would kill the converter and stop all analytics.
                report_internal_error("convert_span", exc, user_code=True)
                for pipeline in self._pipelines:
                    pipeline.count_lost(1, f"converting a span failed with {type(exc).__name__}", "failed")
        for pipeline in self._pipelines:
            pipeline.offer(events)

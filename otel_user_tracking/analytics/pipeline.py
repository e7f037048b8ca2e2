"""One delivery pipeline per sink: a bounded queue, a worker thread, batching and retries.

Modelled on the SDK's ``BatchSpanProcessor`` and the posthog/segment consumers, with what
they lack for analytics: per-sink isolation (a slow backend holds back only its own queue),
retries that honour ``Retry-After`` and retry only the undelivered part of a batch, drops
that are counted instead of silent, and flushes that keep their deadline even while a
backend is failing.

The request path only calls ``put``: a deque append under a lock and, at most once per
batch, a notify. Everything else (converting spans, I/O, sleeping) happens in the worker.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

from opentelemetry.instrumentation.utils import suppress_instrumentation

from ..sinks import PermanentSinkError, RetryableSinkError, Sink
from .events import AnalyticsEvent

_logger = logging.getLogger("otel_user_tracking.pipeline")

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineOptions:
    """Batching and retry settings shared by the pipelines of one processor.

    Args:
        flush_at: Send when this many events are queued (capped by the sink's batch size).
        flush_interval: Send at least this often (seconds) while events are queued.
        max_queue_size: Items held per sink; beyond it new items are dropped and counted.
        max_retries: Retries of one batch after its first attempt.
        max_backoff: Cap (seconds) of the exponential backoff and of ``Retry-After``.
        initial_backoff: First backoff (seconds); doubles per retry, with full jitter.
    """

    flush_at: int = 100
    flush_interval: float = 5.0
    max_queue_size: int = 10_000
    max_retries: int = 5
    max_backoff: float = 30.0
    initial_backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.flush_at < 1:
            raise ValueError("flush_at must be at least 1")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be a positive number of seconds")
        if self.max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.max_backoff <= 0 or self.initial_backoff <= 0:
            raise ValueError("max_backoff and initial_backoff must be positive numbers of seconds")


@dataclass(frozen=True)
class DeliveryStats:
    """Event counts of one sink since the processor started.

    ``enqueued``: events converted from accepted spans; ``sent``: delivered; ``retried``:
    events re-sent after a retryable failure (each retry counts again); ``dropped``: refused
    because the queue was full or the processor shut down, or still queued when shutdown ran
    out of time; ``failed``: given up on (permanent answer, retries exhausted, or no time
    left before the shutdown deadline). ``queued`` is the queue's length now.
    """

    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    dropped: int = 0
    failed: int = 0
    queued: int = 0


class SinkPipeline(Generic[T]):
    """Queue items of type ``T`` for one sink; a worker expands them to events and sends.

    Args:
        sink: Where the events go.
        expand: Turns one queued item into its events (runs in the worker thread).
        options: Batching and retry settings.
        count: How many events an item stands for, used only to count drops of a full queue.
    """

    def __init__(
        self,
        sink: Sink,
        expand: Callable[[T], Sequence[AnalyticsEvent]],
        options: PipelineOptions,
        count: Callable[[T], int] = lambda item: 1,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self._expand = expand
        self._count = count
        self._options = options
        sink_limit = int(getattr(sink, "max_batch_size", options.flush_at))
        self._batch_size = max(1, min(options.flush_at, sink_limit))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue: collections.deque[T] = collections.deque()
        self._events: list[AnalyticsEvent] = []  # expanded, not yet sent (worker only)
        self._busy = False
        self._flush_requested = 0
        self._flush_done = 0
        self._deadline: Optional[float] = None  # of the running flush or shutdown
        self._stopping = False
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._logged: set[str] = set()
        self._stats = {"enqueued": 0, "sent": 0, "retried": 0, "dropped": 0, "failed": 0}

    # -- request path -------------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue ``item`` without blocking; False (and counted) when the queue is full or closed."""
        with self._lock:
            if self._stopping or len(self._queue) >= self._options.max_queue_size:
                refused = True
            else:
                refused = False
                self._queue.append(item)
                if self._thread is None:
                    self._start()
                if len(self._queue) >= self._batch_size:
                    self._wake.notify()
        if refused:
            self._drop_refused(item)
        return not refused

    def _drop_refused(self, item: T) -> None:
        self._count_lost([item], f"refused: queue full ({self._options.max_queue_size} items) or shut down")

    # -- control ------------------------------------------------------------------------

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(**self._stats, queued=len(self._queue))

    def request_flush(self, deadline: float) -> int:
        """Ask the worker to send everything queued now; returns a ticket for ``wait_flushed``."""
        with self._lock:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._deadline = deadline if self._deadline is None else max(self._deadline, deadline)
            if self._thread is None:
                if not self._queue and not self._events:
                    self._flush_done = ticket
                    return ticket
                self._start()
            self._wake.notify()
            return ticket

    def wait_flushed(self, ticket: int, deadline: float) -> bool:
        """Block until the flush with ``ticket`` is done or ``deadline`` passes."""
        with self._lock:
            while self._flush_done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def shutdown(self, deadline: float) -> bool:
        """Deliver what is queued before ``deadline``, then drop the rest and close the sink."""
        ticket = self.request_flush(deadline)
        with self._lock:
            self._stopping = True
            self._wake.notify()
        done = self.wait_flushed(ticket, deadline)
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
        if leftover:
            self._count_lost(leftover, "still queued at shutdown")
        self._close_sink()
        return done and not leftover

    def reinit_after_fork(self) -> None:
        """In a forked child the worker thread is gone; start clean (the parent keeps its queue)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue = collections.deque()
        self._events = []
        self._busy = False
        self._thread = None
        self._deadline = None
        self._flush_requested = self._flush_done = 0

    # -- worker -------------------------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"otel-user-tracking-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Our own HTTP calls must not become spans (nor analytics of analytics).
        with suppress_instrumentation():
            while True:
                with self._lock:
                    self._wait_for_work()
                    # At most one batch of items at a time: memory stays bounded by the queue.
                    items = [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_size))]
                    ticket = self._flush_requested
                    stopping = self._stopping
                    self._busy = True
                self._expand_items(items)
                self._send_all()
                with self._lock:
                    self._busy = False
                    if not self._queue:
                        self._flush_done = max(self._flush_done, ticket)
                        self._deadline = None if self._flush_done >= self._flush_requested else self._deadline
                        self._idle.notify_all()
                    if stopping and not self._queue:
                        return

    def _wait_for_work(self) -> None:
        """Wait (lock held) until a batch is full, the interval passed, or a flush/stop is asked."""
        interval_end = time.monotonic() + self._options.flush_interval
        while True:
            if self._stopping or self._flush_requested > self._flush_done:
                return
            if len(self._queue) >= self._batch_size:
                return
            remaining = interval_end - time.monotonic()
            if remaining <= 0:
                if self._queue:
                    return
                interval_end = time.monotonic() + self._options.flush_interval
                remaining = self._options.flush_interval
            self._wake.wait(remaining)

    def _expand_items(self, items: list[T]) -> None:
        before = len(self._events)
        for item in items:
            try:
                self._events.extend(self._expand(item))
            except Exception as exc:
                self._log_once("expand", f"converting a span failed with {type(exc).__name__}; skipped")
                self._add("failed", 1)
        self._add("enqueued", len(self._events) - before)

    def _send_all(self) -> None:
        while self._events:
            batch = self._events[: self._batch_size]
            del self._events[: self._batch_size]
            self._deliver(batch)

    def _deliver(self, batch: list[AnalyticsEvent]) -> None:
        """Send one batch with retries; count the outcome of every event in it."""
        pending: Sequence[AnalyticsEvent] = batch
        attempt = 0
        while True:
            try:
                self.sink.send(pending)
            except RetryableSinkError as exc:
                remaining = list(exc.remaining) if exc.remaining is not None else list(pending)
                self._delivered(len(pending) - len(remaining))
                if attempt >= self._options.max_retries:
                    self._give_up(remaining, f"{exc} (gave up after {attempt + 1} attempts)")
                    return
                delay = self._backoff(attempt, exc.retry_after)
                if not self._sleep(delay):
                    self._give_up(remaining, f"{exc} (no time left to retry before the shutdown deadline)")
                    return
                attempt += 1
                self._add("retried", len(remaining))
                pending = remaining
            except PermanentSinkError as exc:
                self._give_up(list(pending), str(exc))
                return
            except Exception as exc:
                # A sink bug: never retried (it would fail the same way), never raised.
                self._give_up(list(pending), f"sink raised {type(exc).__name__}")
                return
            else:
                self._delivered(len(pending))
                return

    def _delivered(self, count: int) -> None:
        """Count delivered events; those the sink had to drop (``take_dropped()``) are dropped.

        A sink drops what no request could carry (e.g. a Segment message over 32 KB), and a
        per-event sink (Swetrix) gives up on events the backend refused, rather than fail the
        whole batch; they report how many (``take_dropped()``, ``take_failed()``) so the
        counters stay exact.
        """
        dropped, failed = self._taken("take_dropped"), self._taken("take_failed")
        self._add("sent", count - dropped - failed)
        self._add("dropped", dropped)
        self._add("failed", failed)

    def _taken(self, hook: str) -> int:
        take = getattr(self.sink, hook, None)
        return int(take()) if callable(take) else 0

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        """Full-jitter exponential backoff; ``Retry-After`` is a floor; both capped."""
        options = self._options
        ceiling = min(options.max_backoff, options.initial_backoff * (2**attempt))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, options.max_backoff)

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False when shutdown's deadline comes first.

        A ``force_flush`` deadline does not cut retries short: its caller stops waiting, and
        the worker keeps retrying as it would have.
        """
        wake_at = time.monotonic() + delay
        with self._lock:
            while True:
                if self._stopping and self._deadline is not None and wake_at > self._deadline:
                    return False
                remaining = wake_at - time.monotonic()
                if remaining <= 0:
                    return True
                self._wake.wait(remaining)

    def _give_up(self, events: Sequence[AnalyticsEvent], reason: str) -> None:
        self._add("failed", len(events))
        # One log line per kind of answer (the status and the sink's words), not per batch.
        message = f"analytics sink {self.name}: {len(events)} events not delivered: {reason}"
        self._log_once(reason[:120], message)

    def _count_lost(self, items: list[T], reason: str) -> None:
        events = 0
        for item in items:
            try:
                events += self._count(item)
            except Exception:
                events += 1
        self._add("dropped", events)
        self._log_once(reason, f"analytics sink {self.name}: {events} events {reason}; dropped")

    def _add(self, key: str, amount: int) -> None:
        if amount:
            with self._lock:
                self._stats[key] += amount

    def _log_once(self, key: str, message: str) -> None:
        """Log a failure kind the first time it happens per sink; later ones are only counted."""
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        _logger.warning("%s", message)

    def _close_sink(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.sink.close()
        except Exception as exc:
            _logger.warning("analytics sink %s: close() failed with %s", self.name, type(exc).__name__)

"""One delivery pipeline per sink: a bounded event queue, a sender thread, batching and retries.

Modelled on the SDK's ``BatchSpanProcessor`` and the posthog/segment consumers, with what
they lack for analytics: per-sink isolation (a slow backend holds back only its own queue),
retries that honour ``Retry-After`` and retry only the undelivered part of a batch, drops
that are counted instead of silent, and flushes that keep their deadline even while a
backend is failing.

Every event handed to a pipeline ends in exactly one counter: ``sent``, ``dropped`` (the
queue was full, or it was still queued when shutdown's deadline passed) or ``failed``
(refused, retries exhausted, or still being sent when shutdown's deadline passed), or is
still ``queued``: ``enqueued == sent + dropped + failed + queued``.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, cast

from .._throttle import ThrottledLog
from .._workers import WorkerState, wait_for
from .events import AnalyticsEvent, EventRow, as_events
from .settings import DeliverySettings
from .sink import PermanentSinkError, RetryableSinkError, SendResult, Sink, sink_traits

_logger = logging.getLogger(__name__)

OUTCOMES = ("enqueued", "sent", "retried", "dropped", "failed")
PROBLEMS = ("outbox_errors", "restarts")


@dataclass(frozen=True)
class DeliveryStats:
    """Event counts of one sink since the processor started.

    ``enqueued``: events meant for the sink (including those dropped because its queue was
    full); ``sent``: delivered; ``retried``: events re-sent after a retryable failure (each
    retry counts again); ``dropped``: not sent because the queue was full, the processor
    shut down, the sink could not carry them, or they were still queued when shutdown's
    deadline passed; ``failed``: given up on (refused, retries exhausted, or still in flight
    at shutdown's deadline). ``queued`` is the number waiting or in flight now.
    ``outbox_errors``: operations on the outbox file that failed (locked, disk full) and were
    tried again later; ``restarts``: times the sender crashed and was restarted.
    """

    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    dropped: int = 0
    failed: int = 0
    queued: int = 0
    outbox_errors: int = 0
    restarts: int = 0


def batch_sizes(sink: Sink, settings: DeliverySettings) -> tuple[int, int]:
    """How many queued events wake the sender, and how many one ``send`` takes at most.

    A batch is ``flush_at`` events, capped by the sink's ``max_batch_size``: for a remote
    backend that is the documented request size. A sink that writes locally may say it
    prefers bigger batches (``preferred_batch_size``; the store: every transaction rewrites
    the last, partly filled page of the table and of each index, so ten of 100 events cost
    more than one of 1 000); it is then woken at that many events (never fewer than
    ``flush_at``, at most half the queue, so the queue keeps room while it writes) and takes
    whatever is queued up to its ``max_batch_size``. ``flush_interval`` still bounds how
    long an event waits.
    """
    most = max(1, int(sink.max_batch_size))
    batch = min(settings.flush_at, most)
    preferred = sink_traits(sink).preferred_batch_size
    if preferred <= batch:
        return batch, batch
    return max(batch, min(preferred, most, settings.max_queue_size // 2)), most


class SinkPipeline(WorkerState):
    """Queue events for one sink; a sender thread batches them out with retries.

    Args:
        sink: Where the events go.
        settings: Batching, queue and retry settings.
        name: The pipeline's name in logs, stats and metrics (default the sink's; the
            processor numbers sinks that share a name: ``webhook(host)#2``).
    """

    def __init__(self, sink: Sink, settings: DeliverySettings, *, name: Optional[str] = None) -> None:
        self.sink = sink
        self.name = name or sink.name
        self._settings = settings
        self._batch_size, self._take = batch_sizes(sink, settings)
        traits = sink_traits(sink)
        self._takes_rows = traits.takes_rows
        # The store counts bots' and scripts' requests (``filtered`` events); other sinks never see them.
        self.takes_filtered = traits.takes_filtered
        self._interval = min(settings.flush_interval, traits.max_wait or math.inf)
        self._ledger = traits.ledger
        self._log = ThrottledLog(_logger)
        self._closed = False
        self._close_pending = False  # closed while the sender was delivering: it closes the sink
        self._reset_state()

    def _reset_state(self) -> None:
        """Fresh locks, queue, thread and counters (at start, and in a forked child)."""
        self._reset_worker()
        self._queue: collections.deque[EventRow] = collections.deque()
        self._in_flight = 0
        self._sending = False  # the sender is delivering (in send() or between retries)
        self._abandoned = False  # shutdown counted the batch in flight; the sender must not
        self._deadline: Optional[float] = None  # of the running flush or shutdown
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._outbox_errors = 0

    # -- fed by the span queue ----------------------------------------------------------

    def offer(self, events: Sequence[EventRow]) -> None:
        """Queue events (rows) without blocking; what does not fit is dropped and counted.

        A sink without ``takes_filtered`` never gets the ``filtered`` events of bots' requests.
        """
        if not self.takes_filtered:
            events = [row for row in events if row[1] != "filtered"]
        if not events:
            return
        with self._lock:
            self._counts["enqueued"] += len(events)
            room = 0 if self._stopping else self._settings.max_queue_size - len(self._queue)
            accepted = events if room >= len(events) else events[: max(room, 0)]
            refused = len(events) - len(accepted)
            self._queue.extend(accepted)
            self._counts["dropped"] += refused
            if self._ledger is not None and accepted:
                self._ledger.accept(len(accepted))
            if accepted:
                if self._thread is None:
                    self._start_worker(self.name)
                if len(self._queue) >= self._batch_size:
                    self._wake.notify()
        if refused:
            self._log.warning(
                "queue",
                "analytics sink %s: %d events dropped: queue full (%d events) or shut down",
                self.name,
                refused,
                self._settings.max_queue_size,
            )

    def has_room(self) -> bool:
        """Whether ``offer`` would accept an event now (read without the lock: a hint)."""
        return not self._stopping and len(self._queue) < self._settings.max_queue_size

    def count_lost(self, events: int, reason: str, outcome: str = "dropped") -> None:
        """Count events that never reached the queue: their span was dropped or not converted."""
        with self._lock:
            self._counts["enqueued"] += events
            self._counts[outcome] += events
        self._log.warning(
            f"intake:{outcome}", "analytics sink %s: %d events %s: %s", self.name, events, outcome, reason
        )

    # -- control ------------------------------------------------------------------------

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(
                **self._counts,
                queued=len(self._queue) + self._in_flight,
                outbox_errors=self._outbox_errors,
                restarts=self._restarts,
            )

    def request_flush(self, deadline: float) -> int:
        """Ask the sender to send everything queued now; returns a ticket for ``wait_flushed``."""
        with self._lock:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._deadline = deadline if self._deadline is None else max(self._deadline, deadline)
            if self._thread is None:
                self._flush_done = ticket
                return ticket
            self._wake.notify()
            return ticket

    def wait_flushed(self, ticket: int, deadline: float) -> bool:
        """Block until the flush with ``ticket`` is done or ``deadline`` passes."""
        with self._lock:
            return wait_for(self._idle, lambda: self._flush_done >= ticket, deadline)

    def _stop(self, deadline: float) -> bool:
        """Flush, refuse new events, and wait (until ``deadline``) for the sender to finish."""
        ticket = self.request_flush(deadline)
        with self._lock:
            self._stopping = True
            self._wake.notify()
        done = self.wait_flushed(ticket, deadline)
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        return done

    def shutdown(self, deadline: float) -> bool:
        """Deliver what is queued before ``deadline``; count the rest; close the sink."""
        done = self._stop(deadline)
        with self._lock:
            leftover = len(self._queue)
            self._queue.clear()
            in_flight, self._in_flight = self._in_flight, 0
            self._abandoned = in_flight > 0
            self._counts["dropped"] += leftover
            self._counts["failed"] += in_flight
            if self._ledger is not None:
                self._ledger.settle(leftover + in_flight)
        if leftover or in_flight:
            _logger.warning(
                "analytics sink %s: shutdown deadline reached: %d queued events dropped, %d in flight failed",
                self.name,
                leftover,
                in_flight,
            )
        self._close_sink()
        return done and not leftover and not in_flight

    def after_fork(self) -> None:
        """In a forked child the sender thread is gone and locks may be held: start clean."""
        self._reset_state()

    # -- sender -------------------------------------------------------------------------

    def _recover(self) -> bool:
        """The sender crashed mid-batch: that batch is lost, counted as failed."""
        with self._lock:
            lost = self._in_flight
        self._count("failed", lost, "the sender crashed", "crash")
        with self._lock:
            self._in_flight = 0
        return not self._done_sending()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._wait_for_work(self._queue, self._batch_size, self._interval)
                count = min(len(self._queue), self._take)
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_flight = count
                self._sending = bool(batch)
                ticket = self._flush_requested
                stopping = self._stopping
            if batch:
                self._deliver(batch)
            if self._done_sending():
                return
            with self._lock:
                self._in_flight = 0
                if not self._queue:
                    self._flush_done = max(self._flush_done, ticket)
                    if self._flush_done >= self._flush_requested:
                        self._deadline = None
                    self._idle.notify_all()
                if stopping and not self._queue:
                    return

    def _deliver(self, batch: list[EventRow]) -> None:
        """Send one batch with retries; count the outcome of every event in it."""
        # A row is an AnalyticsEvent in all but its class: sinks that read rows get them as they are.
        pending = cast("list[AnalyticsEvent]", batch) if self._takes_rows else as_events(batch)
        attempt = 0
        while True:
            retry_after: Optional[float] = None
            try:
                result = self.sink.send(pending)
            except RetryableSinkError as exc:
                retry, reason, kind, retry_after = list(pending), str(exc), exc.kind, exc.retry_after
            except PermanentSinkError as exc:
                self._count("failed", len(pending), str(exc), exc.kind)
                return
            except Exception as exc:
                # A sink bug: never retried (it would fail the same way), never raised.
                self._count("failed", len(pending), f"sink raised {type(exc).__name__}", "bug")
                return
            else:
                outcome = result or SendResult()
                retry, reason, kind = list(outcome.retry), outcome.reason, outcome.kind
                retry_after = outcome.retry_after
                lost = outcome.dropped + outcome.failed
                self._count("sent", len(pending) - len(retry) - lost)
                self._count("dropped", outcome.dropped, reason, kind)
                self._count("failed", outcome.failed, reason, kind)
            if not retry:
                return
            if attempt >= self._settings.max_retries:
                self._count("failed", len(retry), f"{reason} (gave up after {attempt + 1} attempts)", kind)
                return
            if not self._sleep(self._backoff(attempt, retry_after)):
                self._count(
                    "failed", len(retry), f"{reason} (no time left before the shutdown deadline)", kind
                )
                return
            attempt += 1
            self._count("retried", len(retry))
            pending = retry

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        """Full-jitter exponential backoff; ``Retry-After`` is a floor; both capped."""
        settings = self._settings
        ceiling = min(settings.max_backoff, settings.initial_backoff * (2**attempt))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, settings.max_backoff)

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False when shutdown's deadline comes first.

        A ``force_flush`` deadline does not cut retries short: its caller stops waiting, and
        the sender keeps retrying as it would have.
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

    def _count(self, outcome: str, events: int, reason: str = "", kind: str = "") -> None:
        if not events:
            return
        with self._lock:
            if self._abandoned:  # shutdown already counted this batch as failed
                return
            if outcome != "retried":
                self._in_flight = max(0, self._in_flight - events)
            self._counts[outcome] += events
            if self._ledger is not None and outcome in ("failed", "dropped"):
                self._ledger.settle(events)
        if outcome in ("failed", "dropped") and reason:
            # One line per kind of answer and period, not per batch.
            self._log.warning(
                f"{outcome}:{kind}",
                "analytics sink %s: %d events %s: %s",
                self.name,
                events,
                "not delivered" if outcome == "failed" else "dropped",
                reason,
            )

    def _done_sending(self) -> bool:
        """The sender is back from delivering; True when it closed the sink shutdown left to it."""
        with self._lock:
            self._sending = False
            pending, self._close_pending = self._close_pending, False
        if pending:
            self._close_now()
        return pending

    def _close_sink(self) -> None:
        """Close the sink now or, while the sender is delivering, as soon as it is back."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._sending:
                self._close_pending = True  # closing under send() could crash it
                return
        self._close_now()

    def _close_now(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:
            _logger.warning("analytics sink %s: close() failed with %s", self.name, type(exc).__name__)

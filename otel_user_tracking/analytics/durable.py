"""A sink pipeline that stores before it forwards: delivery that survives crashes and outages.

Events offered to it are written to the outbox by its own sender thread (never on the
request path), and only then count as accepted; the sender then leases the oldest events
of its sink, sends them, and deletes what the backend acknowledged or refused for good.
Retryable failures never give up: the events stay in the outbox and are tried again with
backoff, however long the backend is away, up to the outbox's bound. A restarted process
resumes the backlog on its own, without new traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..sinks import PermanentSinkError, RetryableSinkError, SendResult, Sink
from .events import EventRow
from .outbox import Outbox, OutboxClosed
from .pipeline import DeliveryStats, SinkPipeline
from .settings import DeliverySettings

_logger = logging.getLogger(__name__)

PERSIST_WAIT = 0.2  # seconds events may wait in memory before they are written to the outbox


class DurablePipeline(SinkPipeline):
    """``SinkPipeline`` for a remote sink, through the outbox.

    Args:
        sink: The remote backend.
        settings: Batching, retry and queue settings (``max_retries`` does not apply: events
            wait in the outbox instead of being given up).
        outbox: Where accepted events wait until the backend took them.
    """

    def __init__(self, sink: Sink, settings: DeliverySettings, outbox: Outbox) -> None:
        super().__init__(sink, settings)
        self.outbox = outbox
        self._backlog = outbox.backlog(self.name)
        self._retry_at = 0.0
        self._attempt = 0
        if self._backlog:
            with self._lock:
                self._start_worker(self.name)  # what an earlier process accepted goes out without new traffic

    def stats(self) -> DeliveryStats:
        stats = super().stats()
        return DeliveryStats(**{**stats.__dict__, "queued": stats.queued + self._backlog})

    def after_fork(self) -> None:
        super().after_fork()
        self._retry_at = 0.0

    def shutdown(self, deadline: float) -> bool:
        """Send what the deadline allows; what is left stays in the outbox for the next start."""
        done = self._stop(deadline)
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
        if leftover:
            self._persist(leftover)
        if self._backlog:
            _logger.warning(
                "analytics sink %s: %d events kept in the outbox %s for the next start",
                self.name,
                self._backlog,
                self.outbox.path,
            )
        self._close_sink()
        return done and not self._backlog

    # -- sender -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                self._wait_for_stored_work()
                incoming = list(self._queue)
                self._queue.clear()
                self._in_flight = len(incoming)
                self._sending = True
                ticket = self._flush_requested
                stopping = self._stopping
            try:
                if incoming:
                    self._persist(incoming)
                if self._backlog and time.monotonic() >= self._retry_at:
                    self._send_oldest()
            except OutboxClosed:
                # Shutdown's deadline passed while this sender still retried, and the processor
                # closed the outbox: what it leased stays in the file for the next start (events
                # it could not store any more were counted as dropped by _persist).
                self._done_sending()
                return
            if self._done_sending():
                return
            with self._lock:
                self._in_flight = 0
                nothing_left = not self._queue and not self._backlog
                out_of_time = self._deadline is not None and time.monotonic() >= self._deadline
                if nothing_left:
                    self._flush_done = max(self._flush_done, ticket)
                    self._idle.notify_all()
                if stopping and not self._queue and (nothing_left or out_of_time):
                    return

    def _wait_for_stored_work(self) -> None:
        """Wait (lock held) for events to store, a backlog that may be sent now, or a deadline.

        A flush or a stop makes events in memory go to the outbox at once; a backlog waiting
        out its backoff is sent when the backoff ends, whoever is waiting for it.
        """
        stored_by = time.monotonic() + PERSIST_WAIT
        while True:
            now = time.monotonic()
            urgent = self._stopping or self._flush_requested > self._flush_done
            if self._queue and (urgent or now >= stored_by or len(self._queue) >= self._batch_size):
                return
            if self._backlog and now >= self._retry_at:
                return
            if urgent and not self._backlog:
                return  # nothing to do: the flush is done
            if self._deadline is not None and now >= self._deadline and self._stopping:
                return
            waits = [self._settings.flush_interval]
            if self._queue:
                waits.append(stored_by - now)
            if self._backlog:
                waits.append(self._retry_at - now)
            if self._deadline is not None:
                waits.append(self._deadline - now)
            self._wake.wait(max(0.001, min(waits)))

    def _persist(self, events: list[EventRow]) -> None:
        """Write events to the outbox: from here on they survive the process."""
        try:
            dropped = self.outbox.put(self.name, events)
        except Exception as exc:  # the outbox's disk is full or gone: these are lost, counted
            self._count(
                "dropped", len(events), f"the outbox could not store them: {type(exc).__name__}", "outbox"
            )
            return
        self._backlog += len(events) - dropped
        if dropped:
            self._count_from_outbox("dropped", dropped, f"outbox full ({self.outbox.max_events} events)")

    def _send_oldest(self) -> None:
        leased = self.outbox.lease(self.name, self._batch_size)
        if not leased:
            self._backlog = self.outbox.backlog(self.name)
            return
        events = [event for _, event in leased]
        ids = {event.event_id: row_id for row_id, event in leased}
        try:
            result = self.sink.send(events)
        except RetryableSinkError as exc:
            self._again(list(ids.values()), exc.retry_after, str(exc), exc.kind)
            return
        except PermanentSinkError as exc:
            self._finish(list(ids.values()), "failed", str(exc), exc.kind)
            return
        except Exception as exc:
            self._finish(list(ids.values()), "failed", f"sink raised {type(exc).__name__}", "bug")
            return
        outcome = result or SendResult()
        again = [ids[event.event_id] for event in outcome.retry if event.event_id in ids]
        done = [row_id for row_id in ids.values() if row_id not in set(again)]
        self.outbox.remove(done)
        self._backlog = max(0, self._backlog - len(done))
        self._count_from_outbox("sent", len(done) - outcome.dropped - outcome.failed)
        self._count_from_outbox("dropped", outcome.dropped, outcome.reason, outcome.kind)
        self._count_from_outbox("failed", outcome.failed, outcome.reason, outcome.kind)
        if again:
            self._again(again, outcome.retry_after, outcome.reason, outcome.kind)
        else:
            self._attempt = 0

    def _again(self, ids: Sequence[int], retry_after: float | None, reason: str, kind: str) -> None:
        """Leave the events in the outbox and try again after a backoff."""
        self.outbox.release(ids)
        self._count_from_outbox("retried", len(ids))
        self._retry_at = time.monotonic() + self._backoff(min(self._attempt, 30), retry_after)
        self._attempt += 1
        self._log.warning(
            f"again:{kind}",
            "analytics sink %s: %d events kept for a later retry: %s",
            self.name,
            len(ids),
            reason,
        )

    def _finish(self, ids: Sequence[int], outcome: str, reason: str, kind: str) -> None:
        self.outbox.remove(ids)
        self._backlog = max(0, self._backlog - len(ids))
        self._count_from_outbox(outcome, len(ids), reason, kind)

    def _count_from_outbox(self, outcome: str, events: int, reason: str = "", kind: str = "") -> None:
        """Count events that left the outbox (they left the in-flight count when stored)."""
        if not events:
            return
        with self._lock:
            self._counts[outcome] += events
        if reason and outcome in ("failed", "dropped"):
            self._log.warning(
                f"{outcome}:{kind}", "analytics sink %s: %d events %s: %s", self.name, events, outcome, reason
            )

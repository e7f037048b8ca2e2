"""A sink pipeline that stores before it forwards: delivery that survives crashes and outages.

Events offered to it are written to the outbox by its own sender thread (never on the
request path), and only then count as accepted; the sender then leases the oldest events
of its sink, sends them, and deletes what the backend acknowledged or refused for good.
Retryable failures never give up: the events stay in the outbox and are tried again with
backoff, however long the backend is away, up to the outbox's bound. A restarted process
resumes the backlog on its own, without new traffic.

The outbox file may fail too (another process holds it locked past the busy timeout, the
disk is full): each failure is counted (``outbox_errors``), logged once per kind and period,
and the operation is tried again after a backoff. Events not yet stored wait in memory
meanwhile (bounded by ``max_queue_size``; beyond it new ones are dropped, counted); rows a
backend acknowledged but the outbox could not delete yet are deleted before anything else
is leased, so they are not sent twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Optional

from .events import EventRow
from .outbox import Outbox, OutboxClosed
from .pipeline import DeliveryStats, SinkPipeline
from .settings import DeliverySettings
from .sink import PermanentSinkError, RetryableSinkError, SendResult, Sink, sink_identity

_logger = logging.getLogger(__name__)

PERSIST_WAIT = 0.2  # seconds events may wait in memory before they are written to the outbox
OutboxError = (sqlite3.Error, OSError)


class DurablePipeline(SinkPipeline):
    """``SinkPipeline`` for a remote sink, through the outbox.

    Args:
        sink: The remote backend.
        settings: Batching, retry and queue settings (``max_retries`` does not apply: events
            wait in the outbox instead of being given up).
        outbox: Where accepted events wait until the backend took them.
        name: See ``SinkPipeline``.
        key: The sink's rows in the outbox (default ``sink_identity(sink)``; the processor
            numbers sinks configured identically).
    """

    def __init__(
        self,
        sink: Sink,
        settings: DeliverySettings,
        outbox: Outbox,
        *,
        name: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        super().__init__(sink, settings, name=name)
        self.outbox = outbox
        self.key = key or sink_identity(sink)
        self._reset_outbox_state()
        try:
            self._backlog = outbox.backlog(self.key)
        except OutboxError:
            self._backlog, self._recount = 0, True  # the sender counts it once the file answers
        if self._backlog or self._recount:
            with self._lock:
                self._start_worker(self.name)  # what an earlier process accepted goes out without new traffic

    def _reset_outbox_state(self) -> None:
        self._backlog = 0
        self._recount = False  # the backlog is unknown: count it before anything else
        self._retry_at = 0.0  # no lease before this (the backend's backoff, or others' leases)
        self._attempt = 0
        self._held_by_others = False  # the wait is for other owners' leases: new rows end it
        self._outbox_ok_at = 0.0  # no outbox operation before this (after an outbox error)
        self._outbox_attempt = 0
        self._unremoved: list[int] = []  # delivered rows the outbox could not delete yet

    def stats(self) -> DeliveryStats:
        stats = super().stats()
        return DeliveryStats(**{**stats.__dict__, "queued": stats.queued + self._backlog})

    def after_fork(self) -> None:
        super().after_fork()
        backlog = self._backlog
        self._reset_outbox_state()
        self._backlog = backlog

    def shutdown(self, deadline: float) -> bool:
        """Send what the deadline allows; what is left stays in the outbox for the next start."""
        done = self._stop(deadline)
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
        try:
            if leftover:
                self._persist(leftover, keep=False)
            if self._unremoved:
                self._remove(self._unremoved)
        except OutboxClosed:
            pass
        if self._backlog:
            _logger.warning(
                "analytics sink %s: %d events kept in the outbox %s for the next start",
                self.name,
                self._backlog,
                self.outbox.path,
            )
        self._close_sink()
        return done and not self._backlog and not leftover

    # -- sender -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                self._wait_for_stored_work()
                if self._stopping and self._out_of_time():
                    return  # shutdown stores what is still in memory
                incoming = list(self._queue)
                self._queue.clear()
                self._in_flight = len(incoming)
                self._sending = True
                ticket = self._flush_requested
            try:
                self._step(incoming)
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
                nothing_left = not self._queue and not self._backlog and not self._unremoved
                if nothing_left:
                    self._flush_done = max(self._flush_done, ticket)
                    self._idle.notify_all()
                if self._stopping and nothing_left:
                    return

    def _step(self, incoming: list[EventRow]) -> None:
        """Store what came in; then delete what was delivered, or send the oldest stored."""
        if incoming:
            self._persist(incoming, keep=True)
        if time.monotonic() < self._outbox_ok_at:
            return
        if self._recount:
            self._count_backlog()
        elif self._unremoved:
            self._remove(self._unremoved)
        elif self._backlog and time.monotonic() >= self._retry_at:
            self._send_oldest()

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _wait_for_stored_work(self) -> None:
        """Wait (lock held) for events to store, a backlog that may be sent now, or a deadline.

        A flush or a stop makes events in memory go to the outbox at once; a backlog waiting
        out its backoff is sent when the backoff ends, whoever is waiting for it; after an
        outbox error nothing touches the file until its own backoff ends.
        """
        stored_by = time.monotonic() + PERSIST_WAIT
        while True:
            now = time.monotonic()
            urgent = self._stopping or self._flush_requested > self._flush_done
            if self._stopping and self._out_of_time():
                return
            outbox_ready = now >= self._outbox_ok_at
            if outbox_ready:
                if self._queue and (urgent or now >= stored_by or len(self._queue) >= self._batch_size):
                    return
                if self._recount or self._unremoved or (self._backlog and now >= self._retry_at):
                    return
            if urgent and not self._queue and not self._backlog and not self._unremoved:
                return  # nothing to do: the flush is done
            waits = [self._settings.flush_interval]
            if not outbox_ready:
                waits.append(self._outbox_ok_at - now)
            elif self._queue:
                waits.append(stored_by - now)
            if outbox_ready and self._backlog:
                waits.append(self._retry_at - now)
            if self._deadline is not None:
                waits.append(self._deadline - now)
            self._wake.wait(max(0.001, min(waits)))

    def _recover(self) -> bool:
        """The sender crashed: what it stored is in the outbox (its leases are ours to take
        again at once), what it had not stored yet was put back or counted by ``_persist``."""
        with self._lock:
            self._in_flight = 0
            self._recount = True
        return not self._done_sending()

    # -- the outbox ---------------------------------------------------------------------

    def _persist(self, events: list[EventRow], *, keep: bool) -> None:
        """Write events to the outbox: from here on they survive the process. When the file
        fails, ``keep`` puts them back in memory to be stored later, else they are lost, counted."""
        try:
            dropped = self.outbox.put(self.key, events, self.name)
        except OutboxError as exc:
            self._outbox_failed(exc, "storing events")
            if keep:
                self._keep_in_memory(events)
            else:
                reason = f"the outbox could not store them: {_explain(exc)}"
                self._count("dropped", len(events), reason, "outbox")
            return
        self._outbox_worked()
        with self._lock:
            self._backlog += len(events) - dropped
            if self._held_by_others:
                self._held_by_others, self._retry_at = False, 0.0  # our new rows are free to lease
        if dropped:
            self._count_from_outbox("dropped", dropped, f"outbox full ({self.outbox.max_events} events)")

    def _keep_in_memory(self, events: list[EventRow]) -> None:
        """Put events the outbox could not take back at the queue's head; what no longer fits is dropped."""
        with self._lock:
            self._queue.extendleft(reversed(events))
            excess = len(self._queue) - self._settings.max_queue_size
            for _ in range(max(0, excess)):
                self._queue.pop()
            self._in_flight = 0
        if excess > 0:
            reason = "queue full while the outbox cannot store events"
            self._count_from_outbox("dropped", excess, reason, "queue")

    def _count_backlog(self) -> None:
        try:
            backlog = self.outbox.backlog(self.key)
        except OutboxError as exc:
            self._outbox_failed(exc, "counting its events")
            return
        self._outbox_worked()
        with self._lock:
            self._backlog, self._recount = backlog, False

    def _remove(self, ids: list[int]) -> None:
        """Delete delivered rows; when the file refuses, keep their ids and try again first."""
        if not ids:
            return
        try:
            self.outbox.remove(ids)
        except OutboxError as exc:
            self._outbox_failed(exc, "deleting delivered events")
            self._unremoved = list(ids)
            return
        self._outbox_worked()
        self._unremoved = []

    def _outbox_failed(self, exc: Exception, doing: str) -> None:
        """Count an outbox error, log it once per kind and period, and back off the file."""
        with self._lock:
            self._outbox_errors += 1
        delay = self._backoff(min(self._outbox_attempt, 30), None)
        self._outbox_attempt += 1
        self._outbox_ok_at = time.monotonic() + delay
        self._log.warning(
            f"outbox:{_explain(exc)}",
            "analytics sink %s: the outbox %s failed while %s (%s); tried again in %.1f s",
            self.name,
            self.outbox.path,
            doing,
            _explain(exc),
            delay,
        )

    def _outbox_worked(self) -> None:
        self._outbox_attempt = 0

    # -- sending ------------------------------------------------------------------------

    def _send_oldest(self) -> None:
        try:
            leased = self.outbox.lease(self.key, self._batch_size)
        except OutboxError as exc:
            self._outbox_failed(exc, "leasing events")
            return
        if not leased:
            self._wait_for_others()
            return
        self._outbox_worked()
        self._held_by_others = False
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
        again = {ids[event.event_id] for event in outcome.retry if event.event_id in ids}
        done = [row_id for row_id in ids.values() if row_id not in again]
        self._finish_delivered(done, outcome)
        if again:
            self._again(sorted(again), outcome.retry_after, outcome.reason, outcome.kind)
        else:
            self._attempt = 0

    def _wait_for_others(self) -> None:
        """Nothing to lease: the rows left are held by other live owners, or were sent by them.
        Wait for the first of those leases to expire (at most ``max_backoff``), not in a loop."""
        try:
            backlog = self.outbox.backlog(self.key)
            expiry = self.outbox.next_expiry(self.key) if backlog else None
        except OutboxError as exc:
            self._outbox_failed(exc, "counting its events")
            return
        settings = self._settings
        wait = settings.max_backoff if expiry is None else expiry - time.time()
        wait = min(settings.max_backoff, max(settings.initial_backoff, wait))
        with self._lock:
            self._backlog = backlog
            if backlog:
                self._held_by_others = True
                self._retry_at = time.monotonic() + wait

    def _finish_delivered(self, done: list[int], outcome: SendResult) -> None:
        self._remove(done)
        with self._lock:
            self._backlog = max(0, self._backlog - len(done))
        self._count_from_outbox("sent", len(done) - outcome.dropped - outcome.failed)
        self._count_from_outbox("dropped", outcome.dropped, outcome.reason, outcome.kind)
        self._count_from_outbox("failed", outcome.failed, outcome.reason, outcome.kind)

    def _again(self, ids: Sequence[int], retry_after: float | None, reason: str, kind: str) -> None:
        """Leave the events in the outbox and try again after a backoff."""
        try:
            self.outbox.release(ids)
        except OutboxError as exc:  # still leased by us: we take them again when the backoff ends
            self._outbox_failed(exc, "giving back events to retry")
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
        self._remove(list(ids))
        with self._lock:
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


def _explain(exc: BaseException) -> str:
    """A bounded name for an outbox error (``database is locked``), never a path or data."""
    text = str(exc).split(":", 1)[0].strip()[:60] if isinstance(exc, sqlite3.Error) else ""
    return text or type(exc).__name__

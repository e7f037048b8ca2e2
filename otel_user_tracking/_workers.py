"""Background threads that share a core with the event loop must step aside, not just yield.

CPython lets a thread that wants the GIL wait up to ``sys.getswitchinterval()`` (5 ms)
before forcing a switch. A worker that releases the GIL briefly (``time.sleep(0)``, or
inside each ``sqlite3`` step) usually takes it back before the waiting event-loop thread is
even scheduled on the shared core, so the request waits out the whole interval: that was
most of the analytics' tail latency. A real sleep, however short, blocks the worker, the
OS runs the waiting thread, and that thread takes the GIL.

The same threads also run at a lower scheduling priority (``background_priority``): on a
shared core, a woken event loop otherwise waits for the kernel's wake-up granularity before
it preempts a busy worker; a niced worker is preempted at once yet still gets its share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sized
from typing import Callable, Optional

from opentelemetry.instrumentation.utils import suppress_instrumentation

from ._throttle import ThrottledLog

_log = ThrottledLog(logging.getLogger(__name__))
RESTART_WAIT = (0.05, 5.0)  # seconds before a crashed worker runs again: first, then doubling to at most

PAUSE_SECONDS = 0.0001
# A worker's slice adapts to how long it waited for its turn after its last pause: a tenth of
# that wait, from ``MIN_SLICE_SECONDS`` to ``MAX_SLICE_SECONDS``. A short wait means the event
# loop is mostly idle: a request may arrive any moment and would wait out the whole slice, so
# slices are short, a fraction of a request's own time. A long wait means the loop is
# saturated (it lets go of the GIL only between its iterations or after the 5 ms switch
# interval): every pause is then a GIL hand-over and two context switches, so short slices
# would cost throughput and leave the worker too little of the core to keep up; a tenth of
# the wait keeps the worker's share of the core near a tenth.
MIN_SLICE_SECONDS = 0.00005
MAX_SLICE_SECONDS = 0.0005
SLICE_PER_WAIT = 0.1


class TimeSlicer:
    """Steps aside after every slice of work: call ``tick()`` between work items.

    Slicing by time, not by count, keeps each hold of the GIL short whatever an item costs.
    Without ``slice_seconds`` the slice adapts to the load (see ``MIN_SLICE_SECONDS``); one
    slicer per worker thread keeps what it learned from one batch to the next.
    """

    __slots__ = ("_adaptive", "_since", "_slice")

    def __init__(self, slice_seconds: Optional[float] = None) -> None:
        self._adaptive = slice_seconds is None
        self._slice = MIN_SLICE_SECONDS if slice_seconds is None else slice_seconds
        self._since = time.perf_counter()

    def restart(self) -> None:
        """A batch begins: the time the worker spent waiting for it was not work."""
        self._since = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self._since < self._slice:
            return
        if _waiting:
            self._since = now
            return
        time.sleep(PAUSE_SECONDS)
        self._since = time.perf_counter()
        if self._adaptive:
            waited = self._since - now - PAUSE_SECONDS
            self._slice = min(MAX_SLICE_SECONDS, max(MIN_SLICE_SECONDS, waited * SLICE_PER_WAIT))

    @property
    def slice_seconds(self) -> float:
        """The current slice."""
        return self._slice


# Callers blocked until the workers are done (force_flush, shutdown). While there is one, the
# workers do not pause: the thread they would step aside for is, in a server, the event loop
# that is itself waiting for them (the lifespan's flush), so a pause would only idle the core.
_waiting = 0
_waiting_lock = threading.Lock()


@contextlib.contextmanager
def awaited() -> Iterator[None]:
    """Count the calling thread as blocked on the workers for the duration of the block."""
    global _waiting
    with _waiting_lock:
        _waiting += 1
    try:
        yield
    finally:
        with _waiting_lock:
            _waiting -= 1


BACKGROUND_NICENESS = 10


def background_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux; elsewhere nothing happens)."""
    native_id = getattr(threading, "get_native_id", None)
    if native_id is None or not hasattr(os, "setpriority"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id())
        os.setpriority(os.PRIO_PROCESS, native_id(), min(19, max(current, BACKGROUND_NICENESS)))
    except OSError:
        return


def wait_for(condition: threading.Condition, done: Callable[[], bool], deadline: float) -> bool:
    """Wait on ``condition`` (held by the caller) until ``done()`` or the monotonic ``deadline``."""
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        condition.wait(remaining)
    return True


class WorkerState(ABC):
    """What a background worker shares with its callers, made fresh at start and after a fork.

    One lock; ``_wake`` wakes the worker, ``_idle`` tells waiters it caught up; flushes are
    numbered tickets (``_flush_requested`` asked, ``_flush_done`` served); ``_stopping`` refuses
    new work; ``_thread`` is the worker, started on first use. A worker whose loop raises is
    restarted (after a wait that doubles with each crash), counted in ``_restarts`` and logged
    once per period: nothing a file, a disk or a backend does may end it for good.
    """

    def _reset_worker(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._flush_requested = 0
        self._flush_done = 0
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._restarts = 0

    @property
    def restarts(self) -> int:
        """Times the worker's loop raised and the worker was restarted."""
        return self._restarts

    def _start_worker(self, name: str) -> None:
        """Run ``_work`` on a niced daemon thread, with instrumentation suppressed: the worker's
        own calls (a sink's HTTP requests) must not become spans, nor analytics of analytics."""
        self._thread = threading.Thread(target=self._main, name=f"otel-user-tracking-{name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        background_priority()
        with suppress_instrumentation():
            while True:
                try:
                    self._work()
                    return
                except Exception as exc:
                    if not self._restart(exc):
                        return

    def _restart(self, exc: Exception) -> bool:
        """The loop raised: count, log, let ``_recover`` mend the state, wait; False ends the worker
        (``_recover`` found its job done)."""
        with self._lock:
            self._restarts += 1
            restarts = self._restarts
        name = threading.current_thread().name
        _log.warning(f"restart:{name}", "%s failed with %s and was restarted", name, type(exc).__name__)
        if not self._recover():
            return False
        first, most = RESTART_WAIT
        with self._lock:
            self._wake.wait(min(most, first * 2 ** min(restarts - 1, 16)))
        return True

    def _recover(self) -> bool:
        """Put the shared state right after the loop raised (lock not held); False: do not restart."""
        return True

    @abstractmethod
    def _work(self) -> None:
        """The worker's loop (the intake converts, a pipeline sends); returns when stopped."""

    def _wait_for_work(self, pending: Sized, enough: int, interval: float) -> None:
        """Wait (lock held) for ``enough`` pending items, a flush or a stop, or ``interval`` to
        pass with something pending."""
        interval_end = time.monotonic() + interval
        while not self._stopping and self._flush_requested == self._flush_done:
            if len(pending) >= enough:
                return
            remaining = interval_end - time.monotonic()
            if remaining <= 0:
                if pending:
                    return
                interval_end = time.monotonic() + interval
                remaining = interval
            self._wake.wait(remaining)

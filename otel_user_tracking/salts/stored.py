"""Day salts kept in a shared store, fetched ahead of time by a background thread.

The request path only reads a dictionary. The thread fetches (creating if absent) the salts
of today and of the next day at start, then at least every ``REFRESH_SECONDS`` and just
after each UTC midnight, when it also deletes the salts of the days before today from the
store. A failed fetch is logged once per period, counted and retried after a doubling wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Callable, Optional

from opentelemetry.instrumentation.utils import suppress_instrumentation

from .._throttle import ThrottledLog
from .._workers import background_priority
from .base import SECONDS_PER_DAY, DaySaltStore, LatestDay, day_of

_logger = logging.getLogger(__name__)

REFRESH_SECONDS = 300.0  # the longest wait between two refreshes (a stepped wall clock, a lost row)
AFTER_MIDNIGHT = 1.0  # seconds past midnight at which the day's first refresh runs
RETRY_SECONDS = (1.0, 60.0)  # after a failed refresh: first wait, then doubling up to
START_WAIT = 2.0  # seconds ``start`` waits for the first refresh
CLOSE_WAIT = 0.5  # seconds ``close`` waits for the thread: the app's shutdown budget is not ours


class StoredSalts:
    """The ``SaltSource`` over a ``DaySaltStore``: every process of the store agrees.

    Usage: ``source = StoredSalts(sink.day_salts()); source.start()``; the analytics
    processor does this for its first sink that keeps salts (``SaltKeeper``).

    Args:
        store: Where the day salts are kept.
        clock: Seconds since the epoch (UTC); injectable to cross midnight in tests.
    """

    def __init__(self, store: DaySaltStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._days = LatestDay()
        self._known: dict[int, bytes] = {}  # replaced whole, never changed in place
        self._forgotten_before = -1  # the store holds no salt of a day before this one
        self._log = ThrottledLog(_logger)
        self.missing = 0  # requests that found no salt for their day (they got no visitor id)
        self._reported_missing = 0
        self.failures = 0  # refreshes that failed
        self._closed = False
        self._started = False
        self._reset_thread()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _restart_in_child(ref()))

    def _reset_thread(self) -> None:
        self._wake = threading.Event()  # a request found no salt, or close()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def salt(self, day: int) -> Optional[bytes]:
        salt = self._known.get(self._days.see(day))
        if salt is None:
            self.missing += 1
            self._wake.set()  # fetch it now rather than at the next scheduled refresh
        return salt

    def start(self) -> None:
        """Start the refresh thread and wait up to ``START_WAIT`` seconds for its first refresh."""
        self._started = True
        self._spawn()
        self._ready.wait(START_WAIT)

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT)  # a daemon: one stuck in the store's busy wait is left behind
        self._known = {}
        try:
            self._store.close()
        except Exception:  # closing must not fail the shutdown that called it
            _logger.debug("closing the visitor salt store failed", exc_info=True)

    def refresh(self) -> None:
        """Fetch today's and the next day's salts if not held, and delete older ones from the
        store; the background thread calls it, tests may call it directly. Raises on failure."""
        today = self._days.see(day_of(self._clock()))
        known = {day: salt for day, salt in self._known.items() if day >= today}
        wanted = [day for day in (today, today + 1) if day not in known]
        with suppress_instrumentation():  # the store's own queries make no spans
            if wanted:
                fetched = self._store.salts(wanted)
                known.update((day, bytes(fetched[day])) for day in wanted)
            self._known = known
            if self._forgotten_before < today and self._store.forget_before(today):
                self._forgotten_before = today

    def _spawn(self) -> None:
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="otel-user-tracking-salts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        background_priority()
        retry = RETRY_SECONDS[0]
        while not self._closed:
            try:
                self.refresh()
                retry = RETRY_SECONDS[0]
                wait = self._until_next_refresh()
            except Exception as exc:  # the store is away: the requests go without ids meanwhile
                self.failures += 1
                self._log.warning(
                    "refresh",
                    "visitor salts: the store did not answer (%s); retrying in %.0f s; until then "
                    "requests of a day whose salt is not known get no visitor id",
                    type(exc).__name__,
                    retry,
                )
                self._ready.set()
                self._stop.wait(retry)  # requests waking it must not hasten the retries
                retry = min(retry * 2, RETRY_SECONDS[1])
                continue
            self._ready.set()
            self._report_missing()
            self._wake.wait(wait)
            self._wake.clear()

    def _until_next_refresh(self) -> float:
        into_day = self._clock() % SECONDS_PER_DAY
        return max(0.1, min(REFRESH_SECONDS, SECONDS_PER_DAY - into_day + AFTER_MIDNIGHT))

    def _report_missing(self) -> None:
        missing = self.missing
        if missing > self._reported_missing:
            self._log.warning(
                "missing",
                "visitor salts: %d requests so far came before their day's salt was known "
                "and got no visitor id",
                missing,
            )
            self._reported_missing = missing


def _restart_in_child(source: Optional[StoredSalts]) -> None:
    """A forked child (gunicorn's workers) has the salts but not the thread: start its own."""
    if source is None:
        return
    source._reset_thread()
    if source._started and not source._closed:
        source._ready.set()
        source._spawn()

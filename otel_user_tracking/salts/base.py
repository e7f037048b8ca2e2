"""The contracts of the visitor-id salt: where a day's salt comes from, and where it is kept.

A visitor id is an HMAC of (client address, user agent, site) keyed by the salt of its UTC
day, so the salt decides who counts as one visitor. Every process of a deployment must use
the same salt for a day (else each worker and each restart counts the visitor again), and a
day's salt must be unknowable once the day is over (else ids could be linked across days).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import Optional, Protocol, runtime_checkable

SECONDS_PER_DAY = 86_400
SALT_BYTES = 32


def day_of(seconds: float) -> int:
    """The UTC day number (days since 1970-01-01) of a time in seconds since the epoch."""
    return int(seconds // SECONDS_PER_DAY)


def new_salt() -> bytes:
    """A fresh random salt."""
    return secrets.token_bytes(SALT_BYTES)


@runtime_checkable
class SaltSource(Protocol):
    """The salt of each UTC day, and its lifecycle.

    ``salt`` runs on the request path: no I/O, no lock held across I/O. None means the day's
    salt is not known yet: the request then gets no visitor id (it still counts as a
    pageview), never an id under a salt another process would not use.
    """

    def salt(self, day: int) -> Optional[bytes]:
        """The salt of UTC day ``day`` (``day_of(time.time())``), or None while it is unknown."""

    def start(self) -> None:
        """Begin fetching salts ahead of time (may wait briefly for the first; never raises)."""

    def close(self) -> None:
        """Stop the background work and forget the salts held in memory."""


@runtime_checkable
class DaySaltStore(Protocol):
    """A shared store's table of day salts: one row per UTC day, the same for every process.

    Called from one background thread of each process, never on the request path; a
    failure raises whatever the driver raises (the caller logs it, counts it and retries).
    ``StoredSalts`` (``salts/stored.py``) drives it: SQLite's is
    ``store/sqlite/salts.py``; a PostgreSQL store implements the same two calls
    (``INSERT ... ON CONFLICT (day) DO NOTHING`` then ``SELECT``; ``DELETE ... WHERE day < %s``).
    """

    def salts(self, days: Sequence[int]) -> Mapping[int, bytes]:
        """The salts of ``days``, each missing row first inserted with a fresh ``new_salt()``
        with insert-if-absent semantics, so that processes racing for a day all get the row
        that won. Returns every day asked for."""

    def forget_before(self, day: int) -> bool:
        """Delete the salts of every day before ``day`` so that their bytes leave the store
        (SQLite: ``secure_delete`` and a truncating WAL checkpoint). True when done; False
        asks to be called again later (e.g. a reader kept the WAL from being truncated)."""

    def close(self) -> None:
        """Release what the store holds (connections); called once, at the end."""


@runtime_checkable
class SaltKeeper(Protocol):
    """A sink whose store can keep the day salts (``SQLiteSink``, the PostgreSQL sink)."""

    def day_salts(self) -> DaySaltStore:
        """The store's salt table (no I/O here: the first call to it opens what it needs)."""


class LatestDay:
    """The latest day asked for: a clock stepped back never returns the ids to an earlier day.

    A day's salt is deleted (or forgotten) once the day is over, so going back to it would
    mint a second salt for it; instead the ids stay on the latest day until the clock
    reaches it again. ``see`` is one comparison unless the day moves on.
    """

    def __init__(self) -> None:
        self.day = -1
        self._lock = threading.Lock()

    def see(self, day: int) -> int:
        """``day``, or the latest day seen if that is later."""
        latest = self.day
        if day <= latest:
            return latest
        with self._lock:
            if day > self.day:
                self.day = day
            return self.day

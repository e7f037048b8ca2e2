"""Cookieless visitor ids: a keyed hash of (client address, user agent, site) with a daily salt.

The salt is random, held only in memory and replaced at each UTC midnight, so the same
visitor has one id for a day and cannot be followed across days, and no address is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from functools import lru_cache
from typing import Callable

_SECONDS_PER_DAY = 86_400


_salt_lock = threading.Lock()
_salts: dict[int, bytes] = {}  # UTC day number -> salt; only the current day is kept


def _salt_for(day: int) -> bytes:
    """The process-wide salt of ``day``: every identifier (and every reconfiguration) agrees."""
    salt = _salts.get(day)
    if salt is None:
        with _salt_lock:
            salt = _salts.get(day)
            if salt is None:
                salt = secrets.token_bytes(32)
                _salts.clear()  # yesterday's salt is forgotten: ids cannot be linked across days
                _visitor_id.cache_clear()  # and so are the ids (and the salt) the cache held
                _salts[day] = salt
    return salt


class VisitorIdentifier:
    """Computes visitor ids; ``clock`` is injectable so tests can cross midnight.

    Args:
        site: Mixed into the hash, so one visitor has different ids on two sites.
        clock: Seconds since the epoch (UTC), ``time.time`` by default.
    """

    def __init__(self, site: str = "", clock: Callable[[], float] = time.time) -> None:
        self._site = site.encode("utf-8")
        self._clock = clock

    def _current_salt(self) -> bytes:
        return _salt_for(int(self._clock() // _SECONDS_PER_DAY))

    def visitor_id(self, client_address: str, user_agent: str) -> str:
        """A 16-hex-character id, stable within the UTC day for the same address, agent and site."""
        return _visitor_id(self._current_salt(), self._site, client_address, user_agent)


@lru_cache(maxsize=1024)  # at most ~0.6 MB: agents are capped at 512 characters
def _visitor_id(salt: bytes, site: bytes, client_address: str, user_agent: str) -> str:
    # Keyed by the salt, so a cached id never outlives its day. Returning visitors within a
    # day are the common case; the cache saves the HMAC (~2 µs) on each of their requests.
    message = b"\x1f".join((client_address.encode("utf-8"), user_agent.encode("utf-8", "replace"), site))
    return hmac.new(salt, message, hashlib.sha256).hexdigest()[:16]


def forget_salts() -> None:
    """Drop the day's salt and the cached ids (``otel_user_tracking.testing.reset``)."""
    with _salt_lock:
        _salts.clear()
        _visitor_id.cache_clear()

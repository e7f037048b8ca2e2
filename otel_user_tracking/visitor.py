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
from typing import Callable

_SECONDS_PER_DAY = 86_400


class VisitorIdentifier:
    """Computes visitor ids; ``clock`` is injectable so tests can cross midnight.

    Args:
        site: Mixed into the hash, so one visitor has different ids on two sites.
        clock: Seconds since the epoch (UTC), ``time.time`` by default.
    """

    def __init__(self, site: str = "", clock: Callable[[], float] = time.time) -> None:
        self._site = site.encode("utf-8")
        self._clock = clock
        self._lock = threading.Lock()
        self._day = -1
        self._salt = b""

    def _current_salt(self) -> bytes:
        day = int(self._clock() // _SECONDS_PER_DAY)
        if day != self._day:
            with self._lock:
                if day != self._day:
                    self._salt = secrets.token_bytes(32)
                    self._day = day
        return self._salt

    def visitor_id(self, client_address: str, user_agent: str) -> str:
        """A 16-hex-character id, stable within the UTC day for the same address, agent and site."""
        message = b"\x1f".join(
            (client_address.encode("utf-8"), user_agent.encode("utf-8", "replace"), self._site)
        )
        return hmac.new(self._current_salt(), message, hashlib.sha256).hexdigest()[:16]

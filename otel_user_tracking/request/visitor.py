"""Cookieless visitor ids: a keyed hash of (client address, user agent, site) with a daily salt.

The salt of the UTC day comes from a configured secret (``Config.visitor_secret``), else
from the process's salt source (``salts/current.py``: the store's day salt, shared by every
process writing the store; random per process without one). So the same visitor has one
id for a day and cannot be followed across days, and no address is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from functools import lru_cache
from typing import Callable, Optional, Union

from ..salts import current
from ..salts.base import SaltSource, day_of
from ..salts.secret import SecretSalts

_cache_lock = threading.Lock()
_cached_salt = b""  # the salt the id cache's entries were made with


class VisitorIdentifier:
    """Computes visitor ids; ``clock`` is injectable so tests can cross midnight.

    Args:
        site: Mixed into the hash, so one visitor has different ids on two sites.
        clock: Seconds since the epoch (UTC), ``time.time`` by default.
        secret: The visitor secret: the day's salt is derived from it (``SecretSalts``)
            instead of coming from the process's source.
    """

    def __init__(
        self,
        site: str = "",
        clock: Callable[[], float] = time.time,
        secret: Union[str, bytes, None] = None,
    ) -> None:
        self._site = site.encode("utf-8")
        self._clock = clock
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self._own: Optional[SaltSource] = None if secret is None else SecretSalts(secret)

    def visitor_id(self, client_address: str, user_agent: str) -> Optional[str]:
        """A 16-hex-character id, stable within the UTC day for the same address, agent and site;
        None while the day's salt is not known yet (a store-kept salt not fetched yet)."""
        source = self._own or current.source
        salt = source.salt(day_of(self._clock()))
        if salt is None:
            return None
        if salt is not _cached_salt:
            _forget_ids_of_other_salts(salt)
        return _visitor_id(salt, self._site, client_address, user_agent)


def _forget_ids_of_other_salts(salt: bytes) -> None:
    """A new salt (a new day): drop the cached ids, and with them the old salt they hold."""
    global _cached_salt
    with _cache_lock:
        if salt is not _cached_salt:
            _visitor_id.cache_clear()
            _cached_salt = salt


@lru_cache(maxsize=1024)  # at most ~0.6 MB: agents are capped at 512 characters
def _visitor_id(salt: bytes, site: bytes, client_address: str, user_agent: str) -> str:
    # Keyed by the salt, so a cached id never outlives its day. Returning visitors within a
    # day are the common case; the cache saves the HMAC (~2 µs) on each of their requests.
    message = b"\x1f".join((client_address.encode("utf-8"), user_agent.encode("utf-8", "replace"), site))
    return hmac.new(salt, message, hashlib.sha256).hexdigest()[:16]


def forget_salts() -> None:
    """Drop the salts and the cached ids, back to random salts (``otel_user_tracking.testing.reset``)."""
    global _cached_salt
    current.reset()
    with _cache_lock:
        _visitor_id.cache_clear()
        _cached_salt = b""

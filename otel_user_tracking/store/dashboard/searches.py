"""Journey searches kept by the server, so a URL carries an opaque key instead of a person's id.

``POST /journey`` resolves what was typed to the stored ids and redirects to
``/?journey=<key>``; the key is an HMAC of the search under a secret made at start-up, so it
says nothing about the id, is the same for the same search (one history entry, one slot
here), and is forgotten when the server restarts or after ``capacity`` newer searches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from typing import Optional

from .journey import IdKind

Search = tuple[IdKind, tuple[str, ...]]


class JourneySearches:
    """The latest ``capacity`` searches by key.

    Usage: ``key = searches.add("user", ("user-42",))``; later ``searches.get(key)``.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._secret = secrets.token_bytes(32)
        self._capacity = capacity
        self._searches: OrderedDict[str, Search] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, kind: IdKind, values: tuple[str, ...]) -> str:
        """The key of this search, kept for ``get``."""
        text = json.dumps([kind, list(values)], ensure_ascii=True).encode()
        key = hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:32]
        with self._lock:
            self._searches[key] = (kind, values)
            self._searches.move_to_end(key)
            while len(self._searches) > self._capacity:
                self._searches.popitem(last=False)
        return key

    def get(self, key: str) -> Optional[Search]:
        with self._lock:
            return self._searches.get(key)

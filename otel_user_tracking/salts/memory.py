"""The salt of last resort: random, in this process's memory only, replaced each UTC day."""

from __future__ import annotations

import threading
from typing import Optional

from .base import LatestDay, new_salt


class RandomSalts:
    """A random salt per day, known to this process alone and never stored.

    Used when there is neither a store to keep the salt nor a configured secret: every
    process then counts a visitor once more (``uvicorn --workers 2`` counts it twice, a
    restart once more). Only the latest day's salt is kept: the day's end forgets it.
    """

    def __init__(self) -> None:
        self._days = LatestDay()
        self._lock = threading.Lock()
        self._current = (-1, b"")  # (day, salt), replaced whole

    def salt(self, day: int) -> Optional[bytes]:
        day = self._days.see(day)
        current = self._current
        if current[0] == day:
            return current[1]
        with self._lock:
            if self._current[0] != day:
                self._current = (day, new_salt())
            return self._current[1]

    def start(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._current = (-1, b"")

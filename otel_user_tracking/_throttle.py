"""Log a kind of failure at most once per period, with how many were held back since.

A dead backend or a full queue fails thousands of times a second; logging each would flood
the host's logs, and logging only the first hides that it goes on. Keys are bounded by the
caller (a status class, a sink name, a reason), never a backend's free text.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

_MAX_KEYS = 256


class ThrottledLog:
    """``warning(key, message, *args)`` logs each key at most once per ``period`` seconds.

    Args:
        logger: Where the records go.
        period: Seconds between two records of one key.
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self, logger: logging.Logger, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, int]] = {}  # key -> (last logged, held back since)

    def warning(self, key: str, message: str, *args: Any) -> bool:
        """Log unless ``key`` was logged less than a period ago; True when logged."""
        now = self._clock()
        with self._lock:
            last, held = self._state.get(key, (float("-inf"), 0))
            if now - last < self._period:
                self._state[key] = (last, held + 1)
                return False
            if key not in self._state and len(self._state) >= _MAX_KEYS:
                self._state.clear()
            self._state[key] = (now, 0)
        if held:
            message += " (%d more like this since the last report)"
            args = (*args, held)
        self._logger.warning(message, *args)
        return True

"""Which visitors a backend was told are a user: once per (anonymous id, user id) per process.

A visitor id lives one UTC day, so a pair stands for (visitor, user, day). The memory is
bounded: past ``MAX_PAIRS`` the oldest pairs are forgotten, and a forgotten pair is at worst
told again (every backend takes a repeated identify as a no-op).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Optional

from ..analytics.events import AnalyticsEvent

MAX_PAIRS = 10_000  # about 1.5 MB at most
Pair = tuple[str, str]  # (anonymous id, user id)


class IdentifiedPairs:
    """The pairs already told (after the backend accepted them), oldest first; thread-safe."""

    def __init__(self, limit: int = MAX_PAIRS) -> None:
        self._limit = limit
        self._pairs: OrderedDict[Pair, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def remember(self, pair: Pair) -> None:
        with self._lock:
            self._pairs[pair] = None
            self._pairs.move_to_end(pair)
            while len(self._pairs) > self._limit:
                self._pairs.popitem(last=False)


def visitor_pair(event: AnalyticsEvent, anonymous_id: Optional[str] = None) -> Optional[Pair]:
    """(anonymous id, user id) of a logged-in event that has an anonymous id, else None."""
    anonymous = anonymous_id or event.visitor_id
    if not event.user_id or not anonymous or anonymous == event.user_id:
        return None
    return anonymous, event.user_id


def identify_id(event: AnalyticsEvent) -> str:
    """The id of the identify message sent before ``event``: derived, so retries deduplicate."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"otel-user-tracking:identify:{event.event_id}"))

"""The day partitions of ``events``: created ahead of the rows that need them, dropped whole.

Every writer of a fleet creates and drops partitions; each change runs under the schema's
advisory lock with a short lock timeout, so two writers never race and none waits long
behind a reader holding the table.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from ..sqlite.schema import TABLE
from .schema import DAY_US, SCHEMA_LOCK, create_partition, day_of

_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_LIST = (
    "SELECT child.relname, pg_get_expr(child.relpartbound, child.oid), pg_total_relation_size(child.oid) "
    "FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
    f"WHERE pg_inherits.inhparent = '{TABLE}'::regclass"
)


class Partitions:
    """The days this writer knows have a partition, so a batch checks a set, not the catalog."""

    def __init__(self, days_ahead: int = 2) -> None:
        self.days_ahead = days_ahead
        self._days: set[int] = set()

    def forget(self) -> None:
        self._days = set()

    def load(self, connection: Any) -> None:
        self._days = {low for _, low, _, _ in listed(connection)}

    def ensure(self, connection: Any, timestamps: Iterable[int]) -> None:
        """Create the partitions of the days ``timestamps`` fall in that are not known yet."""
        missing = {day_of(ts) for ts in timestamps} - self._days
        if missing:
            self._create(connection, missing)

    def ensure_ahead(self, connection: Any) -> None:
        today = day_of(int(time.time() * 1_000_000))
        missing = {today + n * DAY_US for n in range(self.days_ahead + 1)} - self._days
        if missing:
            self._create(connection, missing)

    def _create(self, connection: Any, days: set[int]) -> None:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for day in sorted(days):
                connection.execute(create_partition(day))
        self._days |= days

    def drop_before(self, connection: Any, cutoff_us: int) -> int:
        """Drop the partitions whose whole day is before ``cutoff_us``; how many."""
        return self._drop(connection, lambda parts: [p for p in parts if p[2] <= cutoff_us])

    def drop_oldest_over(self, connection: Any, cap_bytes: int) -> int:
        """Drop the oldest partitions (never today's or later) while the table is over ``cap_bytes``."""
        today = day_of(int(time.time() * 1_000_000))

        def victims(parts: list[tuple[str, int, int, int]]) -> list[tuple[str, int, int, int]]:
            total, chosen = sum(size for *_, size in parts), []
            for part in sorted(parts, key=lambda p: p[1]):
                if total <= cap_bytes or part[1] >= today:
                    break
                chosen.append(part)
                total -= part[3]
            return chosen

        return self._drop(connection, victims)

    def _drop(self, connection: Any, choose: Any) -> int:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            connection.execute("SET LOCAL lock_timeout = 2000")
            doomed = choose(listed(connection))
            for name, low, _, _ in doomed:
                connection.execute(f'DROP TABLE IF EXISTS "{name}"')
                self._days.discard(low)
        return len(doomed)


def listed(connection: Any) -> list[tuple[str, int, int, int]]:
    """Each partition's name, bounds (microseconds) and size in bytes."""
    found = []
    for name, bound, size in connection.execute(_LIST):
        match = _BOUNDS.search(bound or "")
        if match:
            found.append((str(name), int(match.group(1)), int(match.group(2)), int(size)))
    return found

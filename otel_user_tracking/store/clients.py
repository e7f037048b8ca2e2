"""What the store says about who sent the requests: filtered requests by class, devices of pageviews.

The queries are portable SQL (``?`` parameters, no SQLite-only function) over the
``events`` table; they run on any DB-API connection that takes ``?`` (``execute``), and
the rows are ordered here, in Python, so both backends order NULLs alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ..agents import BOT, MONITOR, SCRIPT
from .scope import Scope, as_scope

Execute = Callable[[str, tuple[Any, ...]], Any]  # runs a statement, returns a cursor

FILTERED_CLASSES: tuple[str, ...] = (BOT, MONITOR, SCRIPT)
_FILTERED = "SELECT name, COUNT(*) FROM events WHERE type = 'filtered' AND {scope} GROUP BY name"
_DEVICES = (
    "SELECT device_type, browser, os, COUNT(*), COUNT(DISTINCT visitor_id) FROM {source} "
    "WHERE type = 'pageview' AND {scope} GROUP BY device_type, browser, os"
)


@dataclass(frozen=True)
class FilteredRow:
    """Requests not counted as pageviews because a bot, monitor or script sent them."""

    client: str
    requests: int


@dataclass(frozen=True)
class DeviceRow:
    """Pageviews and unique visitors of one device type, browser and OS ("unknown": not known)."""

    device_type: str
    browser: str
    os: str
    pageviews: int
    visitors: int


def filtered_requests(execute: Execute, since: Union[int, Scope]) -> tuple[FilteredRow, ...]:
    """Every filtered class with its count in the scope (or since a time in microseconds; 0 for
    a class with none), in ``FILTERED_CLASSES`` order; a class another version stored comes last."""
    scope = as_scope(since)
    found = execute(_FILTERED.format(scope=scope.sql), scope.params).fetchall()
    counts = {str(name): int(n) for name, n in found}
    names = [*FILTERED_CLASSES, *sorted(set(counts) - set(FILTERED_CLASSES))]
    return tuple(FilteredRow(name, counts.get(name, 0)) for name in names)


def devices(
    execute: Execute, since: Union[int, Scope], limit: int, source: str = "events"
) -> tuple[DeviceRow, ...]:
    """The ``limit`` device type, browser and OS combinations with the most pageviews.

    ``source`` is the table, or the table pinned to its covering index (``Dialect.indexed``).
    """
    scope = as_scope(since)
    found = execute(_DEVICES.format(source=source, scope=scope.sql), scope.params).fetchall()
    return device_rows(found, limit)


def device_rows(found: Iterable[Sequence[Any]], limit: int) -> tuple[DeviceRow, ...]:
    """The ``limit`` rows with the most pageviews of ``(device type, browser, OS, pageviews,
    visitors)`` counts (the report counts them in its per-visitor pass, or ``devices`` in SQL)."""
    rows = [
        DeviceRow(_known(kind), _known(browser), _known(os), int(views), int(visitors))
        for kind, browser, os, views, visitors in found
    ]
    rows.sort(key=lambda row: (-row.pageviews, row.device_type, row.browser, row.os))
    return tuple(rows[:limit])


def _known(value: Optional[object]) -> str:
    return "unknown" if value is None else str(value)

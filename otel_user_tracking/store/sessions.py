"""Visits: sessions, bounce rate, visit duration, views per session, entry and exit pages.

A session is computed when the report is read, from the stored pageviews, so it is exact
across workers, hosts and restarts and costs the request path and the insert nothing:

* A pageview that carries a session id (the app's ``session_header``, ``x-session-id`` by
  default) belongs to that session, however far apart its pageviews are: the app (or
  PostHog's frontend, whose ``X-POSTHOG-SESSION-ID`` it reads) decided.
* Other pageviews are grouped by visitor (``visitor_id``: a logged-in user keeps the id of
  their browser): one visitor's pageviews more than ``SESSION_GAP`` (30 minutes, as Plausible,
  Umami and Google Analytics) apart start a new session. Visitor ids change at UTC midnight,
  so a visit across midnight counts as two sessions, as with Plausible.
* Pageviews with neither (``Sec-GPC``/``DNT`` requests) are in no session.

Only pageviews inside the window count: a session that began before ``since`` starts at its
first pageview inside it. A session's duration is the time from its first to its last
pageview (a server sees no time spent on the last page): 0 for a bounce, a session of one
pageview. The mean duration is over every session, bounces included; the median is the
nearest-rank median of the durations in whole seconds (truncated).

Pageviews of one visitor or session are taken in time order (pageviews of the same
microsecond by page). The report's unique-visitor count already groups the window's
pageviews by visitor (one sort, in two halves on two connections); each visitor's times
and session ids come back beside its pages and ``VisitTally`` cuts them into sessions, so
sessions cost no scan of their own. ``sessions_by_sql`` computes the same with window
functions in one statement both stores run (SQLite 3.25+, PostgreSQL), slower: the report
falls back to it when a page holds the separator the grouped rows are joined with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import compress, islice, repeat
from operator import and_, floordiv, gt, lt, sub
from typing import Optional

from .reader import Reader
from .sqlite.schema import TABLE

SESSION_GAP = timedelta(minutes=30)
_GAP_US = int(SESSION_GAP / timedelta(microseconds=1))
_BUFFERED = 65_536  # sessions buffered before they are counted


@dataclass(frozen=True)
class PageCount:
    """A page and how many sessions entered (or left) there."""

    page: str
    sessions: int


@dataclass(frozen=True)
class Sessions:
    """The window's visits (see the module docstring for the rules).

    ``bounce_rate`` is the share of sessions with one pageview (0 to 1), ``views_per_session``
    the sessions' pageviews over their number; durations are in seconds. Rates and averages
    are None when there is no session.
    """

    sessions: int
    bounces: int
    bounce_rate: Optional[float]
    pageviews: int
    views_per_session: Optional[float]
    mean_duration_s: Optional[float]
    median_duration_s: Optional[int]
    entry_pages: tuple[PageCount, ...]
    exit_pages: tuple[PageCount, ...]


EMPTY = Sessions(0, 0, None, 0, None, None, None, (), ())
Page = Optional[str]


class VisitTally:
    """Sessions counted from pageviews given per visitor (and per session id), then merged.

    Each visitor's sessions are cut with C-level ``map``/``compress`` over their times, and
    their entry and exit pages and durations buffered in lists counted in bulk
    (``Counter.update``): a per-session Python step would cost more than the query.
    """

    def __init__(self) -> None:
        self.entries: Counter[Page] = Counter()
        self.exits: Counter[Page] = Counter()
        self.seconds: Counter[int] = Counter()
        self.bounces = 0
        self.pageviews = 0
        self.total_us = 0
        self._entries: list[Page] = []
        self._exits: list[Page] = []
        self._durations: list[int] = []
        # Pages of visits of one pageview (bounces), counted once for entries and exits.
        self.bounced: Counter[Page] = Counter()
        self._bounced: list[Page] = []
        # Session id -> (first time, its page, last time, its page, pageviews): a session can
        # span visitors (an address that changed) and so both halves of the report.
        self.given: dict[str, tuple[int, Page, int, Page, int]] = {}

    def add_visitor(self, times: Sequence[int], pages: Sequence[Page]) -> None:
        """One visitor's pageviews without a session id, in any order: cut at gaps over 30 minutes."""
        count = len(times)
        self.pageviews += count
        if count == 1:
            self._bounced.append(pages[0])
            return
        gaps = list(map(sub, islice(times, 1, None), times))
        if min(gaps) <= 0:  # not strictly in time order
            ordered = sorted(zip(times, pages), key=_time_then_page)
            times, pages = [t for t, _ in ordered], [p for _, p in ordered]
            gaps = list(map(sub, islice(times, 1, None), times))
        if min(gaps) > _GAP_US:  # each pageview a visit of its own (the commonest case)
            self._bounced.extend(pages)
        elif max(gaps) <= _GAP_US:  # one visit
            self._entries.append(pages[0])
            self._exits.append(pages[-1])
            self._durations.append(times[-1] - times[0])
        else:
            # A visit starts after a long gap (or first) and ends before one (or last): a
            # pageview that does both is a bounce, the others pair up in order.
            long = [True, *map(_GAP_US.__lt__, gaps), True]
            entering, leaving = long[:-1], long[1:]
            self._bounced.extend(compress(pages, map(and_, entering, leaving)))
            starts, ends = list(map(gt, entering, leaving)), list(map(lt, entering, leaving))
            self._entries.extend(compress(pages, starts))
            self._exits.extend(compress(pages, ends))
            self._durations.extend(map(sub, compress(times, ends), compress(times, starts)))
        if len(self._bounced) + len(self._durations) >= _BUFFERED:
            self._count()

    def _count(self) -> None:
        self.entries.update(self._entries)
        self.exits.update(self._exits)
        self.total_us += sum(self._durations)
        self.seconds.update(map(floordiv, self._durations, repeat(1_000_000)))
        if self._bounced:  # of no duration, entered and left on the same page
            self.bounced.update(self._bounced)
            self.seconds[0] += len(self._bounced)
            self.bounces += len(self._bounced)
        self._entries, self._exits, self._durations, self._bounced = [], [], [], []

    def add_given(self, session_id: str, times: Sequence[int], pages: Sequence[Page]) -> None:
        """Pageviews of a session the app named (any order, any gaps)."""
        ordered = sorted(zip(times, pages), key=_time_then_page)
        (first, entry), (last, leaving) = ordered[0], ordered[-1]
        self._merge_given(session_id, (first, entry, last, leaving, len(ordered)))

    def merge(self, other: VisitTally) -> None:
        """Add another tally's sessions (the other half of the visitors)."""
        self._count()
        other._count()
        self.entries.update(other.entries)
        self.exits.update(other.exits)
        self.bounced.update(other.bounced)
        self.seconds.update(other.seconds)
        self.bounces += other.bounces
        self.pageviews += other.pageviews
        self.total_us += other.total_us
        for session_id, part in other.given.items():
            self._merge_given(session_id, part)

    def result(self, limit: int) -> Sessions:
        """The sessions, the ``limit`` commonest entry and exit pages."""
        for first, entry, last, leaving, views in self.given.values():
            self.pageviews += views
            self._entries.append(entry)
            self._exits.append(leaving)
            self._durations.append(last - first)
            self.bounces += views == 1
        self.given = {}
        self._count()
        sessions = sum(self.seconds.values())
        if not sessions:
            return EMPTY
        return Sessions(
            sessions=sessions,
            bounces=self.bounces,
            bounce_rate=self.bounces / sessions,
            pageviews=self.pageviews,
            views_per_session=self.pageviews / sessions,
            mean_duration_s=self.total_us / sessions / 1e6,
            median_duration_s=_median(self.seconds),
            entry_pages=_top(self.entries + self.bounced, limit),
            exit_pages=_top(self.exits + self.bounced, limit),
        )

    def _merge_given(self, session_id: str, part: tuple[int, Page, int, Page, int]) -> None:
        known = self.given.get(session_id)
        if known is None:
            self.given[session_id] = part
            return
        early = min(known, part, key=lambda side: _time_then_page((side[0], side[1])))
        late = max(known, part, key=lambda side: _time_then_page((side[2], side[3])))
        self.given[session_id] = (early[0], early[1], late[2], late[3], known[4] + part[4])


def _time_then_page(pair: tuple[int, Page]) -> tuple[int, bool, str]:
    """Time order; pageviews of one microsecond by page (none first), as ``sessions_by_sql``."""
    return pair[0], pair[1] is not None, pair[1] or ""


def _statement(source: str, where: str) -> str:
    # Each pageview with its session key and its neighbours in the key's time order (one sort);
    # then edges: entering (no earlier pageview of the key, or a visitor's gap over 30 min),
    # leaving (the same forward); then of the edges only, each entry's own exit (the next edge).
    key = "CASE WHEN session_id IS NULL THEN 'v' || visitor_id ELSE 's' || session_id END"
    order = "PARTITION BY k ORDER BY ts_us, page IS NOT NULL, page"
    return (
        "WITH views AS ("
        f"SELECT {key} AS k, session_id IS NOT NULL AS given, ts_us, page FROM {source} "
        f"WHERE type = 'pageview' AND {where} AND (visitor_id IS NOT NULL OR session_id IS NOT NULL)), "
        "neighbours AS ("
        f"SELECT k, given, ts_us, page, lag(ts_us) OVER ({order}) AS before_us, "
        f"lead(ts_us) OVER ({order}) AS after_us FROM views), "
        "edges AS ("
        "SELECT k, ts_us, page, "
        f"CASE WHEN before_us IS NULL OR (NOT given AND ts_us - before_us > {_GAP_US}) "
        "THEN 1 ELSE 0 END AS entering, "
        f"CASE WHEN after_us IS NULL OR (NOT given AND after_us - ts_us > {_GAP_US}) "
        "THEN 1 ELSE 0 END AS leaving "
        "FROM neighbours), "
        "visits AS ("
        "SELECT entering, leaving, page, "
        f"CASE WHEN leaving = 1 THEN 0 ELSE lead(ts_us) OVER ({order}) - ts_us END AS duration_us "
        "FROM edges WHERE entering = 1 OR leaving = 1) "
        # One row set for all: ('entry'|'exit', page, sessions), ('seconds', whole seconds,
        # sessions), ('totals', pageviews, total microseconds).
        "SELECT 'entry', page, COUNT(*), 0 FROM visits WHERE entering = 1 GROUP BY page "
        "UNION ALL SELECT 'exit', page, COUNT(*), 0 FROM visits WHERE leaving = 1 GROUP BY page "
        "UNION ALL SELECT 'seconds', NULL, COUNT(*), duration_us / 1000000 FROM visits "
        "WHERE entering = 1 GROUP BY duration_us / 1000000 "
        "UNION ALL SELECT 'bounces', NULL, COUNT(*), 0 FROM visits WHERE entering = 1 AND leaving = 1 "
        "UNION ALL SELECT 'totals', NULL, (SELECT COUNT(*) FROM views), "
        "(SELECT coalesce(SUM(duration_us), 0) FROM visits WHERE entering = 1)"
    )


def sessions_by_sql(db: Reader, where: str, params: tuple[object, ...], limit: int) -> Sessions:
    """The visits among the pageviews matching ``where`` (the window's condition, with ``params``),
    the ``limit`` commonest entry and exit pages."""
    # The pageviews' covering index holds every column read.
    sql = _statement(db.dialect.indexed(f"{TABLE}_pageviews"), where)
    entries: Counter[Page] = Counter()
    exits: Counter[Page] = Counter()
    seconds: Counter[int] = Counter()
    bounces = pageviews = total_us = 0
    for kind, page, count, value in db.execute(sql, params):
        if kind == "entry":
            entries[page] = int(count)
        elif kind == "exit":
            exits[page] = int(count)
        elif kind == "seconds":
            seconds[int(value)] = int(count)
        elif kind == "bounces":
            bounces = int(count)
        else:
            pageviews, total_us = int(count), int(value)
    sessions = sum(seconds.values())
    if not sessions:
        return EMPTY
    return Sessions(
        sessions=sessions,
        bounces=bounces,
        bounce_rate=bounces / sessions,
        pageviews=pageviews,
        views_per_session=pageviews / sessions,
        mean_duration_s=total_us / sessions / 1e6,
        median_duration_s=_median(seconds),
        entry_pages=_top(entries, limit),
        exit_pages=_top(exits, limit),
    )


def _top(counts: Counter[Page], limit: int) -> tuple[PageCount, ...]:
    """Most sessions first, then by page (none last), as the report's other tables."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))[:limit]
    return tuple(PageCount(str(page), n) for page, n in ranked)


def _median(histogram: dict[int, int]) -> Optional[int]:
    """The nearest-rank median: the smallest value with at least half the values at or below it."""
    total = sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if 2 * seen >= total:
            return value
    return None

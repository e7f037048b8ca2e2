"""One person's path through the product: their pageviews, custom events and errors in time order.

The store holds user ids as the TagPolicy left them (kept, hashed, masked or dropped), so a
typed user id is turned into its stored form before the search: hashed with the same keyed
HMAC when the policy hashes ids and the key is at hand, masked when it masks them. The page
says which (``UserIdForm.explain``), and only stored forms ever reach a URL.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from ...env import ENV_PREFIX, policy_from_env
from ...policy import FIELD_MODES, HASH_KEY_ENV, TagPolicy
from ..reader import Reader, as_reader
from ..sqlite.schema import TABLE

IdKind = Literal["user", "visitor", "session"]
ID_KINDS: tuple[IdKind, ...] = ("user", "visitor", "session")
JOURNEY_LIMIT = 500
_HEX_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class UserIdForm:
    """How user ids are stored, so a typed id can be searched as stored.

    Usage: ``UserIdForm.from_env().stored("user-42")`` gives the values to look up.

    Args:
        mode: The policy's mode for ``user.id``: "keep", "hash", "mask" or "drop".
        policy: The policy, when it can hash (its key is known) or mask here.
    """

    mode: str = "keep"
    policy: Optional[TagPolicy] = None

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> UserIdForm:
        """The policy the ``OTEL_PYTHON_USER_TRACKING_*`` variables describe, as the app reads them."""
        source = os.environ if env is None else env
        try:
            policy = policy_from_env(source)
        except ValueError:
            # Hashed ids without the key here (or another bad variable): search by hash.
            declared = source.get(ENV_PREFIX + "ID", "").strip().lower()
            return cls(mode=declared if declared in FIELD_MODES else "keep")
        return cls(mode=policy.id, policy=policy)

    @property
    def can_hash(self) -> bool:
        return self.mode == "hash" and self.policy is not None

    def stored(self, typed: str) -> tuple[str, ...]:
        """The stored values a typed user id may have; empty when ids are not stored."""
        text = typed.strip()
        if not text or self.mode == "drop":
            return ()
        if self.mode == "hash":
            found = [text.lower()] if _HEX_HASH.match(text.lower()) else []
            if self.policy is not None:
                found.insert(0, self.policy.hash(text))
            return tuple(dict.fromkeys(found))
        if self.mode == "mask" and self.policy is not None:
            masked = self.policy.apply_id(text)
            return (masked,) if masked else ()
        return (text,)

    def explain(self) -> str:
        """One sentence for the page: what a user id search looks for."""
        if self.mode == "drop":
            return "User ids are not stored under the tag policy; search by visitor or session id."
        if self.can_hash:
            return (
                "User ids are stored as keyed hashes (HMAC-SHA256): the id you type is hashed with "
                f"the key from {HASH_KEY_ENV} before the search; a 64-hex hash is searched as it is."
            )
        if self.mode == "hash":
            return (
                f"User ids are stored as keyed hashes and {HASH_KEY_ENV} is not set here: "
                "search by the hash (64 hex characters) as it appears in the store."
            )
        if self.mode == "mask":
            return "User ids are stored masked (first character kept): a search finds every id masked alike."
        return "User ids are stored as the app set them: search by the id itself."


@dataclass(frozen=True)
class Step:
    """One event of a journey, with what the page shows of it."""

    ts_us: int
    type: str
    page: Optional[str]
    method: Optional[str]
    status_code: Optional[int]
    duration_ms: Optional[float]
    name: Optional[str]
    error_type: Optional[str]
    error_message: Optional[str]
    meta_json: Optional[str]
    trace_id: str


_ID_INDEXES: dict[str, tuple[str, str]] = {
    "user": ("user_id", f"{TABLE}_requests"),
    "visitor": ("visitor_id", f"{TABLE}_pageviews"),
    "session": ("session_id", f"{TABLE}_requests"),
}
_STEP_COLUMNS = (
    "ts_us, type, page, method, status_code, duration_ms, name, error_type, error_message, meta, trace_id"
)


def journey(
    source: Union[Reader, sqlite3.Connection],
    kind: IdKind,
    values: tuple[str, ...],
    since_us: int,
    limit: int = JOURNEY_LIMIT,
) -> tuple[Step, ...]:
    """The latest ``limit`` events of the person with any of ``values`` since ``since_us``, oldest first.

    A user's journey also holds what their visitor ids did while not logged in, on the UTC
    day the user had them (a visitor id lives one day, its salt's): the anonymous pageviews
    before a login that day (and after a logout) join the user's. The window's entries of a covering
    ``(type, ts_us, ...)`` index that holds the id are read, and only matching rows are
    read from the table.
    """
    if kind not in ID_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ID_KINDS)}, not {kind!r}")
    if not values:
        return ()
    db = as_reader(source)
    parts: list[_Part] = [(kind, values, since_us, None)]
    if kind == "user":
        for day, visitors in sorted(_visitors_by_day(db, values, since_us).items()):
            parts.append(("visitor", visitors, max(since_us, day), day + DAY_US))
    # A store without the indexes (an older schema) still answers, unhinted.
    try:
        rows = _steps(db, parts, limit, hinted=True)
    except sqlite3.OperationalError:
        rows = _steps(db, parts, limit, hinted=False)
    return tuple(Step(*row[:-1]) for row in reversed(rows))


DAY_US = 86_400_000_000
MAX_LINKED_VISITORS = 64  # visitor ids of one user linked into a journey (one a day and device)
_MAX_OWN_ROWS = 5_000  # the user's latest events read to find their visitor ids
_TYPES = "type IN ('pageview', 'error', 'custom')"
# (id kind, ids, from, until): the events of those ids from ``from`` (until ``until``, if given)
_Part = tuple[IdKind, tuple[str, ...], int, Optional[int]]


def _steps(db: Reader, parts: list[_Part], limit: int, *, hinted: bool) -> list[Any]:
    """The latest steps of every part, newest first.

    Several indexes start with (type, ts_us); only the hinted one holds the id, so rows of
    other people are skipped inside the index, within the part's time range. UNION: an event
    that matches two parts (a logged-in pageview, by its user and by its visitor) is one step.
    """
    selects: list[str] = []
    params: list[object] = []
    for kind, values, start, end in parts:
        column, index = _ID_INDEXES[kind]
        table = db.dialect.indexed(index) if hinted else TABLE
        until = "" if end is None else " AND ts_us < ?"
        marks = ", ".join("?" * len(values))
        where = f"{_TYPES} AND ts_us >= ?{until} AND {column} IN ({marks})"
        selects.append(f"SELECT {_STEP_COLUMNS}, id FROM {table} WHERE {where}")
        params.extend((start, *(() if end is None else (end,)), *values))
    sql = f"{' UNION '.join(selects)} ORDER BY ts_us DESC, id DESC LIMIT ?"
    return list(db.execute(sql, (*params, limit)).fetchall())


def _visitors_by_day(db: Reader, users: tuple[str, ...], since_us: int) -> dict[int, tuple[str, ...]]:
    """The visitor ids the users' events carry, by the UTC day (its start) they carried them:
    a visitor id is linked on its day only (at most ``MAX_LINKED_VISITORS``, the latest)."""
    marks = ", ".join("?" * len(users))
    sql = (
        f"SELECT visitor_id, ts_us FROM {{table}} WHERE {_TYPES} AND ts_us >= ? "
        f"AND user_id IN ({marks}) AND visitor_id IS NOT NULL ORDER BY ts_us DESC LIMIT ?"
    )
    params = (since_us, *users, _MAX_OWN_ROWS)
    try:
        rows = db.execute(sql.format(table=db.dialect.indexed(_ID_INDEXES["user"][1])), params).fetchall()
    except sqlite3.OperationalError:
        rows = db.execute(sql.format(table=TABLE), params).fetchall()
    days: dict[int, set[str]] = {}
    seen: set[tuple[int, str]] = set()
    for visitor, ts_us in rows:
        if type(ts_us) is not int:  # SQLite checks no column's type: an odd time links nothing
            continue
        day = ts_us - ts_us % DAY_US
        if (day, str(visitor)) not in seen and len(seen) < MAX_LINKED_VISITORS:
            seen.add((day, str(visitor)))
            days.setdefault(day, set()).add(str(visitor))
    return {day: tuple(sorted(visitors)) for day, visitors in days.items()}

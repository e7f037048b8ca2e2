"""The analytics event: one frozen record per pageview, error or custom event.

Every sink maps this one type to its wire format, so it holds exactly what the TagPolicy
lets out (user fields and client address are already policy-processed when an event is
built) and nothing else.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Optional, Sequence, Union

from .. import _limits

EventType = Literal["pageview", "error", "custom", "filtered"]
MetaValue = Union[str, int, float, bool]

MAX_EVENT_NAME_LENGTH = 256
MAX_META_KEYS = 100
_EMPTY_META: Mapping[str, MetaValue] = MappingProxyType({})


def validate_event_name(name: object) -> str:
    """Return ``name`` if it is a valid custom event name, else raise ``ValueError`` saying why.

    Names are 1 to 256 characters with no control characters, which fits Swetrix's limit and
    both ``UPPER_SNAKE_CASE`` and Segment-style ``Item Purchased`` names.
    """
    if not isinstance(name, str):
        raise ValueError(f"event name must be a str, not {type(name).__name__}")
    if not 1 <= len(name) <= MAX_EVENT_NAME_LENGTH:
        raise ValueError(f"event name must be 1 to {MAX_EVENT_NAME_LENGTH} characters, got {len(name)}")
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        raise ValueError("event name must not contain control characters")
    return name


def validate_meta(meta: Optional[Mapping[str, object]]) -> Mapping[str, MetaValue]:
    """Return a read-only, size-capped copy of ``meta``, or raise ``ValueError`` naming a bad key.

    Values must be str, int, float or bool (finite numbers) and keys non-empty strings, so
    that every sink can carry them without loss; anything else raises. Size is never an
    error: past ``MAX_META_KEYS`` keys, keys longer than ``MAX_META_KEY_CHARS`` and what
    would take the meta past ``MAX_META_TOTAL_CHARS`` are dropped, strings longer than
    ``MAX_META_VALUE_CHARS`` are cut with a marker; each is counted (``cut_counts()``).
    """
    if meta is None:
        return _EMPTY_META
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a mapping, not {type(meta).__name__}")
    clean: dict[str, MetaValue] = {}
    total = 0
    dropped: Counter[str] = Counter()
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta keys must be non-empty strings, got {key!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"meta[{key!r}] is a {type(value).__name__}; use str, int, float or bool")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"meta[{key!r}] must be a finite number")
        if len(clean) >= MAX_META_KEYS:
            dropped["meta.keys"] += 1
            continue
        if len(key) > _limits.MAX_META_KEY_CHARS:
            dropped["meta.key"] += 1
            continue
        if isinstance(value, str):
            value = _limits.cut(value, _limits.MAX_META_VALUE_CHARS, "meta.value")
        size = len(key) + (len(value) if isinstance(value, str) else 8)
        if total + size > _limits.MAX_META_TOTAL_CHARS:
            dropped["meta.total"] += 1
            continue
        total += size
        clean[key] = value
    for kind, count in dropped.items():
        _limits.note_cut(kind, count)
    return MappingProxyType(clean)


def page_of(
    method: Optional[str], route: Optional[str], path: Optional[str], status: Optional[int]
) -> Optional[str]:
    """What analytics groups a request under: its route template, else its path.

    A 404 without a route matched no route (a scanner's ``/wp-login.php``, a typo): such
    requests share one page, their method (``GET``), as the semantic conventions name the
    span of a request without a route, so endless distinct paths do not become endless
    pages. Their paths stay in ``path``.
    """
    if route:
        return route
    if status == 404:
        return method if method and method != "_OTHER" else "HTTP"
    return path


def new_event_id() -> str:
    """A random UUID4 string; sinks use it for idempotent delivery."""
    return str(uuid.uuid4())


class EventRecord(NamedTuple):
    """The event's fields in the store's column order: THE field list of the analytics path.

    The store's schema, its row (the record itself), the JSON form and the sinks' generic
    mappings all derive from these fields, so a new field is added here and nowhere else
    that holds a list of fields: to add an event field, add one line here, plus its reader
    (``conversion.py`` fills rows by field name; a field nobody fills stays None). ``ts_us``
    is the time in integer microseconds since the epoch (UTC); ``page`` is what analytics
    groups by (``page_of``): the route template when known, else the path; ``meta_json`` is
    the custom event's meta as compact JSON, or None. ``service_name`` and
    ``deployment_environment`` come from the span's Resource.
    ``client`` to ``device_type`` describe the user agent (``analytics/devices.py``). A
    ``filtered`` event is a request of a bot, monitor or script that ``ignore_bots`` kept
    from being a pageview: ``name`` is its client class; it holds no user, visitor, session,
    address, referrer or query, and only sinks with ``takes_filtered`` (the store) get it.
    """

    event_id: str
    type: EventType
    ts_us: int
    trace_id: str
    span_id: str
    name: Optional[str] = None
    method: Optional[str] = None
    scheme: Optional[str] = None
    host: Optional[str] = None
    path: Optional[str] = None
    query: Optional[str] = None
    route: Optional[str] = None
    page: Optional[str] = None
    status_code: Optional[int] = None
    duration_ms: Optional[float] = None
    referrer: Optional[str] = None
    locale: Optional[str] = None
    utm_source: Optional[str] = None
    utm_medium: Optional[str] = None
    utm_campaign: Optional[str] = None
    utm_term: Optional[str] = None
    utm_content: Optional[str] = None
    user_agent: Optional[str] = None
    client: Optional[str] = None
    browser: Optional[str] = None
    browser_version: Optional[str] = None
    os: Optional[str] = None
    device_type: Optional[str] = None
    client_address: Optional[str] = None
    user_id: Optional[str] = None
    user_name: Optional[str] = None
    user_email: Optional[str] = None
    visitor_id: Optional[str] = None
    posthog_distinct_id: Optional[str] = None
    session_id: Optional[str] = None
    service_name: Optional[str] = None
    deployment_environment: Optional[str] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    error_stacktrace: Optional[str] = None
    user_extra: Optional[str] = None  # the user's extra fields (TagPolicy.extra) as compact JSON
    meta_json: Optional[str] = None


FIELDS: tuple[str, ...] = EventRecord._fields
# The user's fields besides the id (``user_name``, ``user_email``): what sinks send as traits,
# with the extra fields (``user_extra``) beside them.
USER_TRAITS: tuple[str, ...] = tuple(
    name
    for name in FIELDS
    if name.startswith("user_") and name not in ("user_id", "user_extra", "user_agent")
)
_TRAIT_NAMES = tuple((field, field[len("user_") :]) for field in USER_TRAITS)
_DEFAULTS: dict[str, Any] = dict(EventRecord._field_defaults)


class AnalyticsEvent(EventRecord):
    """One analytics event, already shaped by the TagPolicy: an immutable record.

    ``event_id`` is unique per event and stable across retries, so receivers that
    deduplicate (PostHog ``uuid``, Segment ``messageId``) never double count.

    Usage: ``AnalyticsEvent(type="custom", trace_id=..., span_id=..., name="SIGNED_UP",
    meta={"plan": "pro"})``; fields are read as attributes (``event.route``,
    ``event.timestamp``, ``event.meta``). The conversion builds each event as a plain tuple
    of these fields (``EventRow``, the store's row as it is), and a sink that reads fields by
    name gets its batch as ``AnalyticsEvent``s (``as_events``): that is what makes it cheap.
    """

    __slots__ = ()

    def __new__(
        cls,
        type: EventType,
        trace_id: str,
        span_id: str,
        timestamp: Optional[datetime] = None,
        event_id: Optional[str] = None,
        *,
        meta: Optional[Mapping[str, MetaValue]] = None,
        **fields: Any,
    ) -> AnalyticsEvent:
        unknown = set(fields) - set(_DEFAULTS) - {"ts_us"}
        if unknown:
            raise TypeError(f"AnalyticsEvent has no field(s) {', '.join(sorted(unknown))}")
        values = dict(_DEFAULTS)
        values.update(fields)
        when = timestamp or datetime.now(timezone.utc)
        values["event_id"] = event_id or new_event_id()
        values["type"], values["trace_id"], values["span_id"] = type, trace_id, span_id
        if "ts_us" not in fields:
            values["ts_us"] = to_us(when)
        if "page" not in fields:
            values["page"] = page_of(values["method"], values["route"], values["path"], values["status_code"])
        if meta:
            values["meta_json"] = encode_meta(meta)
        if isinstance(values["user_extra"], Mapping):
            values["user_extra"] = encode_meta(values["user_extra"])
        return tuple.__new__(cls, [values[name] for name in FIELDS])

    @property
    def timestamp(self) -> datetime:
        """When it happened, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_us / 1_000_000, tz=timezone.utc)

    @property
    def meta(self) -> Mapping[str, MetaValue]:
        """A custom event's properties (read-only); empty for other events."""
        if not self.meta_json:
            return _EMPTY_META
        return MappingProxyType(json.loads(self.meta_json))

    @property
    def url(self) -> Optional[str]:
        """The (scrubbed) full URL when scheme, host and path are known."""
        if not (self.scheme and self.host and self.path is not None):
            return None
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.path}{query}"

    def renamed(self, names: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """The fields among ``names`` (field, key) the event has, under their keys: a wire
        format's mapping. None and "" are absent."""
        found = ((key, getattr(self, field)) for field, key in names)
        return {key: value for key, value in found if value is not None and value != ""}

    @property
    def user_extra_fields(self) -> Mapping[str, MetaValue]:
        """The user's extra fields (``set_user(plan="pro")``) as the policy let them out (read-only)."""
        if not self.user_extra:
            return _EMPTY_META
        return MappingProxyType(json.loads(self.user_extra))

    def user_traits(self) -> dict[str, Any]:
        """The user's fields besides the id that the event has, by short name (``name``, ``email``),
        and the extra fields by their names (the built-in ones win a clash)."""
        traits = self.renamed(_TRAIT_NAMES)
        if self.user_extra:
            traits = {**json.loads(self.user_extra), **traits}
        return traits

    @property
    def distinct_id(self) -> Optional[str]:
        """The user id when known, else the cookieless visitor id."""
        return self.user_id or self.visitor_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every field but ``ts_us``/``meta_json``, with an ISO-8601 UTC
        ``timestamp``, a plain ``meta`` dict and ``user_extra`` as a dict."""
        data: dict[str, Any] = dict(zip(FIELDS, self))
        del data["ts_us"], data["meta_json"]
        data["timestamp"] = self.timestamp.isoformat()
        data["meta"] = json.loads(self.meta_json) if self.meta_json else {}
        data["user_extra"] = json.loads(self.user_extra) if self.user_extra else {}
        return data


EventRow = tuple[Any, ...]
"""An event as a plain tuple of its ``FIELDS`` in order: how events wait in the pipeline.

The garbage collector stops tracking a plain tuple that holds only strings, numbers and None
the first time it survives a collection, and never looks at it again; it cannot do that for
an ``AnalyticsEvent`` (a tuple subclass). Under load a thousand events wait for the store's
next transaction, long enough to reach the older generations, and tracked, their 35 fields
made the collections of those generations 40-70 % longer (the event loop's longest pauses,
which make its p99). So the conversion makes rows, the pipelines queue rows, and a sink gets
them as ``AnalyticsEvent``s (``as_events``) unless it reads events only as rows (``takes_rows``).
"""


_new = tuple.__new__  # namedtuple's _make without its Python-level length check


def as_events(rows: Sequence[EventRow]) -> list[AnalyticsEvent]:
    """Rows as ``AnalyticsEvent``s (the same values; a row is an event in all but its class)."""
    return [_new(AnalyticsEvent, row) for row in rows]


def to_us(when: datetime) -> int:
    """Integer microseconds since the epoch of an aware (or UTC naive) datetime."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - _EPOCH) // _MICROSECOND


def encode_meta(meta: Mapping[str, MetaValue]) -> Optional[str]:
    """Compact JSON of a custom event's meta (None when empty): its stored form."""
    return json.dumps(dict(meta), separators=(",", ":"), ensure_ascii=False) if meta else None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

"""The analytics event: one frozen record per pageview, error or custom event.

Every sink maps this one type to its wire format, so it holds exactly what the TagPolicy
lets out (user fields and client address are already policy-processed when an event is
built) and nothing else.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal, Mapping, Optional, Union

EventType = Literal["pageview", "error", "custom"]
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
    """Return a read-only copy of ``meta`` or raise ``ValueError`` naming the bad key.

    Values must be str, int, float or bool (finite numbers), keys non-empty strings, and at
    most 100 keys, so that every sink can carry them without loss.
    """
    if meta is None:
        return _EMPTY_META
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a mapping, not {type(meta).__name__}")
    if len(meta) > MAX_META_KEYS:
        raise ValueError(f"meta has {len(meta)} keys; at most {MAX_META_KEYS} are allowed")
    clean: dict[str, MetaValue] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta keys must be non-empty strings, got {key!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"meta[{key!r}] is a {type(value).__name__}; use str, int, float or bool")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"meta[{key!r}] must be a finite number")
        clean[key] = value
    return MappingProxyType(clean)


def new_event_id() -> str:
    """A random UUID4 string; sinks use it for idempotent delivery."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class AnalyticsEvent:
    """One analytics event, already shaped by the TagPolicy.

    ``event_id`` is unique per event and stable across retries, so receivers that
    deduplicate (PostHog ``uuid``, Segment ``messageId``) never double count.
    """

    type: EventType
    trace_id: str
    span_id: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    event_id: str = field(default_factory=new_event_id)
    name: Optional[str] = None
    method: Optional[str] = None
    scheme: Optional[str] = None
    host: Optional[str] = None
    path: Optional[str] = None
    query: Optional[str] = None
    route: Optional[str] = None
    status_code: Optional[int] = None
    duration_ms: Optional[float] = None
    referrer: Optional[str] = None
    locale: Optional[str] = None
    utm_source: Optional[str] = None
    utm_medium: Optional[str] = None
    utm_campaign: Optional[str] = None
    user_agent: Optional[str] = None
    client_address: Optional[str] = None
    user_id: Optional[str] = None
    user_name: Optional[str] = None
    user_email: Optional[str] = None
    visitor_id: Optional[str] = None
    session_id: Optional[str] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    error_stacktrace: Optional[str] = None
    meta: Mapping[str, MetaValue] = field(default_factory=lambda: _EMPTY_META)

    @property
    def url(self) -> Optional[str]:
        """The (scrubbed) full URL when scheme, host and path are known."""
        if not (self.scheme and self.host and self.path is not None):
            return None
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.path}{query}"

    @property
    def page(self) -> Optional[str]:
        """The route template when known, else the path: what analytics groups by."""
        return self.route or self.path

    @property
    def distinct_id(self) -> Optional[str]:
        """The user id when known, else the cookieless visitor id."""
        return self.user_id or self.visitor_id

    @classmethod
    def build(cls, **values: Any) -> AnalyticsEvent:
        """Make an event from trusted, already valid values, several times faster than ``__init__``.

        The conversion makes one event per request on the pipeline's worker thread; a frozen
        dataclass's ``__init__`` pays an ``object.__setattr__`` per field (35 of them), so
        this fills the instance dict in one update instead. Fields left out get their
        defaults; ``type``, ``trace_id`` and ``span_id`` are required.
        """
        event = object.__new__(cls)
        state = dict(_DEFAULTS)
        state.update(values)
        if "timestamp" not in values:
            state["timestamp"] = datetime.now(timezone.utc)
        if "event_id" not in values:
            state["event_id"] = new_event_id()
        event.__dict__.update(state)
        return event

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO-8601 UTC timestamp, plain dict meta)."""
        # Not dataclasses.asdict: it deep-copies, and the read-only meta cannot be copied.
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["timestamp"] = self.timestamp.astimezone(timezone.utc).isoformat()
        data["meta"] = dict(self.meta)
        return data


_DEFAULTS: dict[str, Any] = {
    item.name: item.default for item in fields(AnalyticsEvent) if item.default is not MISSING
}
_DEFAULTS["meta"] = _EMPTY_META

"""Finished server spans to analytics events: one pageview, its errors, its custom events.

The conversion reads only the span, after the middleware has put it under the TagPolicy, so
an event can never hold what the span was not allowed to hold. It is a pure function of the
span and the analytics rules, and event ids are derived from the span's ids, so converting
the same span twice (once per sink, or after a restart) gives identical events and
idempotent backends do not double count.

It runs once per request, so it is written for speed: the request's fields are read once
into one tuple, and each event is that tuple plus its own few fields, in the store's
column order (``EventRecord``), built without keyword arguments or per-field copies, as
a plain tuple (``EventRow``: the collector untracks it; see ``events.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b
from typing import Any, Optional
from urllib.parse import unquote_plus

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from .. import _limits
from .. import attributes as attrs
from .._errors import report_internal_error
from .._spans import span_attributes, span_events
from ..config import Config
from .events import AnalyticsEvent, EventRow, as_events, encode_meta, page_of

_EXCEPTION = "exception"
_UTM_INDEX = {"utm_source": 0, "utm_medium": 1, "utm_campaign": 2}
_NO_UTM = (None, None, None)
# The event's user fields are USER_FIELDS' ``user_<field>``s, in order (tests/test_conversion.py).
_NO_USER = (None,) * len(attrs.USER_FIELD_KEYS)
_MAX_UTM = 256
_NO_ERROR_OR_META = (None, None, None, None)


def is_candidate(span: ReadableSpan) -> bool:
    """True for server spans: the only check on the request path (whether the middleware
    marked the span as one request is checked by ``event_rows``, in the worker)."""
    return span.kind is SpanKind.SERVER


def convert_span(span: ReadableSpan, config: Config) -> list[AnalyticsEvent]:
    """Every analytics event a finished server span stands for, in time order.

    Spans the middleware did not mark as one request (another library's server span, an
    excluded URL) stand for none. The pageview comes first (HTTP only, subject to the
    method, bot and filter rules), then one error event per ``exception`` span event and one
    custom event per ``track()`` call.
    """
    return as_events(event_rows(span, config))


def event_rows(span: ReadableSpan, config: Config) -> list[EventRow]:
    """``convert_span``'s events as rows, what the converter thread hands to the pipelines."""
    attributes = span_attributes(span)
    request_type = attributes.get(attrs.REQUEST_TYPE)
    if request_type is None or attributes.get(attrs.EXCLUDED):
        return []
    context = span.context
    trace_id = f"{context.trace_id:032x}" if context else "0" * 32
    span_id = f"{context.span_id:016x}" if context else "0" * 16
    prefix = f"{trace_id}:{span_id}:"
    head, tail = _request_fields(attributes, config)
    events: list[EventRow] = []
    start = span.start_time or 0
    if request_type == "http" and _counts_as_pageview(attributes, head[0], config):
        end = span.end_time
        duration = round((end - start) / 1e6, 3) if end is not None and start else None
        pageview = (
            _derived_id(prefix + "pageview:0"),
            "pageview",
            start // 1000,
            trace_id,
            span_id,
            None,
            *head,
            duration,
            *tail,
            *_NO_ERROR_OR_META,
        )
        if config.pageview_filter is None or _filter_allows(config, pageview):
            events.append(pageview)
    for index, event in enumerate(span_events(span)):
        event_attributes: Mapping[str, Any] = event.attributes or _NONE
        kind = event_attributes.get(attrs.EVENT_TYPE)
        if event.name == _EXCEPTION and kind is None:
            error = (
                _bounded(event_attributes.get("exception.type"), _limits.MAX_EXCEPTION_TYPE_CHARS),
                _bounded(event_attributes.get("exception.message"), _limits.MAX_EXCEPTION_MESSAGE_CHARS),
                _bounded(
                    event_attributes.get("exception.stacktrace"), _limits.MAX_EXCEPTION_STACKTRACE_CHARS
                ),
                None,
            )
            error_id = _derived_id(f"{prefix}error:{index}")
            when = event.timestamp // 1000
            row = (error_id, "error", when, trace_id, span_id, None, *head, None, *tail, *error)
            events.append(row)
        elif kind == "custom":
            given = event_attributes.get(attrs.EVENT_ID)
            event_id = given if isinstance(given, str) else _derived_id(f"{prefix}custom:{index}")
            meta = encode_meta(_meta(event_attributes))
            when = event.timestamp // 1000
            row = (
                event_id,
                "custom",
                when,
                trace_id,
                span_id,
                event.name,
                *head,
                None,
                *tail,
                None,
                None,
                None,
                meta,
            )
            events.append(row)
    return events


_NONE: Mapping[str, Any] = {}
_TEXT_TYPES = {str, type(None)}


def _request_fields(attributes: Mapping[str, Any], config: Config) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The request's fields shared by all its events, in ``EventRecord`` order, in two parts.

    From ``method`` to ``status_code`` (8 fields), then from ``referrer`` to ``session_id``
    (each event puts its duration between them); the privacy signal (``Sec-GPC``/``DNT``)
    removes the user fields and the visitor id.
    """
    get = attributes.get
    path = get("url.path")
    query = get("url.query")
    if path is None:
        path, query = _old_semconv_path_and_query(attributes)
    route = get(attrs.HTTP_ROUTE)
    status = get("http.response.status_code") or get("http.status_code")
    status = status if type(status) is int else _status(status)
    method = get("http.request.method") or get("http.method")
    utm = _utm(query) if query and ("tm_" in query or "TM_" in query) else _NO_UTM
    private = config.honor_privacy_signals and get(attrs.PRIVACY_SIGNAL)
    user: tuple[Optional[str], ...] = _NO_USER
    if not private:
        # Semantic-convention and our own attributes are strings; user fields set by other
        # code may not be, and the policy's outputs are.
        user = tuple(map(get, attrs.USER_FIELD_KEYS))
        if not _TEXT_TYPES.issuperset(map(type, user)):
            user = tuple(map(_text, user))
    head = (
        method,
        get("url.scheme") or get("http.scheme"),
        get(attrs.HOST) or get("server.address") or get("http.host") or get("net.host.name"),
        path,
        query or None,
        route,
        route or page_of(method, route, path, status),
        status,
    )
    tail = (
        get(attrs.REFERRER),
        get(attrs.LOCALE),
        *utm,
        get("user_agent.original") or get("http.user_agent"),
        None if private else get(attrs.CLIENT_ADDRESS),
        *user,
        None if private else get(attrs.VISITOR_ID),
        get(attrs.SESSION_ID),
    )
    return head, tail


def _old_semconv_path_and_query(attributes: Mapping[str, Any]) -> tuple[Any, Any]:
    """The old ASGI semconv puts only the path in ``http.target`` and the query in ``http.url``."""
    path = query = None
    target = attributes.get("http.target")
    if isinstance(target, str):
        path, _, target_query = target.partition("?")
        query = target_query or None
    if query is None:
        full = attributes.get("url.full") or attributes.get("http.url")
        if isinstance(full, str) and "?" in full:
            query = full.split("?", 1)[1].split("#", 1)[0]
    return path, query


def _utm(query: str) -> tuple[Optional[str], ...]:
    """``utm_source``, ``utm_medium``, ``utm_campaign``: the first non-empty value of each."""
    found: list[Optional[str]] = [None, None, None]
    for part in query.split("&"):
        if part[:4].lower() != "utm_":
            continue
        key, _, value = part.partition("=")
        index = _UTM_INDEX.get(key.lower())
        if index is None or not value or found[index] is not None:
            continue
        found[index] = (unquote_plus(value) if "%" in value or "+" in value else value)[:_MAX_UTM]
    return tuple(found)


def _counts_as_pageview(attributes: Mapping[str, Any], method: Optional[str], config: Config) -> bool:
    if config.ignore_bots and attributes.get(attrs.BOT):
        return False
    return method is None or method.upper() in config.pageview_methods


def _filter_allows(config: Config, row: EventRow) -> bool:
    try:
        return bool(config.pageview_filter(AnalyticsEvent._make(row)))  # type: ignore[misc]
    except Exception as exc:
        # A broken filter is the user's code: keep the pageview, count the failure.
        report_internal_error("pageview_filter", exc, user_code=True)
        return True


def _meta(event_attributes: Mapping[str, Any]) -> dict[str, Any]:
    prefix = attrs.EVENT_META_PREFIX
    cut = len(prefix)
    return {
        key[cut:]: value
        for key, value in event_attributes.items()
        if key.startswith(prefix) and isinstance(value, (str, int, float, bool))
    }


def _text(value: Any) -> Optional[str]:
    if value is None or type(value) is str:
        return value
    return str(value)


def _bounded(value: Any, limit: int) -> Optional[str]:
    """An exception text as the event holds it: already under the policy (``SpanGuard``),
    bounded again here for one another layer added as a plain span event."""
    text = _text(value)
    if text is None or len(text) <= limit + _MARKER_ROOM:
        return text
    return _limits.cut(text, limit, "error_event.text")


_MARKER_ROOM = 64  # a text the guard cut holds its marker beyond the limit
_MAX_TYPE = _limits.MAX_EXCEPTION_TYPE_CHARS
_MAX_MESSAGE = _limits.MAX_EXCEPTION_MESSAGE_CHARS
_MAX_STACKTRACE = _limits.MAX_EXCEPTION_STACKTRACE_CHARS


def _status(value: Any) -> Optional[int]:
    if isinstance(value, (int, str)) and str(value).isdigit():
        return int(value)
    return None


def _derived_id(seed: str) -> str:
    """A UUID (version 4 layout) that is the same every time the same span is converted.

    The hex digest is laid out by hand; ``uuid.UUID(bytes=..., version=4)`` gives the same
    string at several times the cost.
    """
    h = blake2b(seed.encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

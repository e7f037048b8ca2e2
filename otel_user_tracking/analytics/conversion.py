"""Finished server spans to analytics events: one pageview, its errors, its custom events.

The conversion reads only the span, after the middleware has put it under the TagPolicy, so
an event can never hold what the span was not allowed to hold. It is a pure function of the
span and the configuration, and event ids are derived from the span's ids, so converting
the same span twice (once per sink, or after a restart) gives identical events and
idempotent backends do not double count.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Optional
from urllib.parse import parse_qsl

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from .. import attributes as attrs
from .._errors import report_internal_error
from ..config import Config
from .events import AnalyticsEvent, MetaValue

# Old and stable HTTP semconv names for the same fact; the first present wins.
_METHOD = ("http.request.method", "http.method")
_SCHEME = ("url.scheme", "http.scheme")
_STATUS = ("http.response.status_code", "http.status_code")
_USER_AGENT = ("user_agent.original", "http.user_agent")
_HOST = (attrs.HOST, "server.address", "http.host", "net.host.name")
_UTM_KEYS = {"utm_source": "utm_source", "utm_medium": "utm_medium", "utm_campaign": "utm_campaign"}
_EXCEPTION = "exception"
_NONE: Mapping[str, Any] = {}


def is_candidate(span: ReadableSpan) -> bool:
    """True for server spans: the only check on the request path (whether the middleware
    marked the span as one request is checked by ``convert_span``, in the worker)."""
    return span.kind is SpanKind.SERVER


def convert_span(span: ReadableSpan, config: Config) -> list[AnalyticsEvent]:
    """Every analytics event a finished server span stands for, in time order.

    Spans the middleware did not mark as one request (another library's server span, an
    excluded URL) stand for none.

    The pageview comes first (HTTP only, subject to the method, bot and filter rules), then
    one error event per ``exception`` span event and one custom event per ``track()`` call.
    """
    attributes = dict(span.attributes or _NONE)  # one copy: plain dict lookups from here on
    if attrs.REQUEST_TYPE not in attributes or attributes.get(attrs.EXCLUDED):
        return []
    common = _common_fields(span, attributes, config)
    trace_id, span_id = common["trace_id"], common["span_id"]
    events: list[AnalyticsEvent] = []
    if attributes.get(attrs.REQUEST_TYPE) == "http":
        pageview = AnalyticsEvent.build(
            type="pageview",
            timestamp=_datetime(span.start_time),
            event_id=_derived_id(trace_id, span_id, "pageview", 0),
            duration_ms=_duration_ms(span),
            **common,
        )
        if _wants_pageview(pageview, attributes, config):
            events.append(pageview)
    for index, event in enumerate(span.events):
        event_attributes: Mapping[str, Any] = event.attributes or {}
        if event.name == _EXCEPTION and attrs.EVENT_TYPE not in event_attributes:
            events.append(
                AnalyticsEvent.build(
                    type="error",
                    timestamp=_datetime(event.timestamp),
                    event_id=_derived_id(trace_id, span_id, "error", index),
                    error_type=_text(event_attributes.get("exception.type")),
                    error_message=_text(event_attributes.get("exception.message")),
                    error_stacktrace=_text(event_attributes.get("exception.stacktrace")),
                    **common,
                )
            )
        elif event_attributes.get(attrs.EVENT_TYPE) == "custom":
            events.append(
                AnalyticsEvent.build(
                    type="custom",
                    name=event.name,
                    timestamp=_datetime(event.timestamp),
                    event_id=_text(event_attributes.get(attrs.EVENT_ID))
                    or _derived_id(trace_id, span_id, "custom", index),
                    meta=MappingProxyType(_meta(event_attributes)),
                    **common,
                )
            )
    return events


def _common_fields(span: ReadableSpan, attributes: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """The request's fields shared by all its events, with the privacy signal applied."""
    context = span.context
    path, query = _path_and_query(attributes)
    status = _first(attributes, _STATUS)
    fields: dict[str, Any] = {
        "trace_id": format(context.trace_id, "032x") if context else "0" * 32,
        "span_id": format(context.span_id, "016x") if context else "0" * 16,
        "method": _text(_first(attributes, _METHOD)),
        "scheme": _text(_first(attributes, _SCHEME)),
        "host": _text(_first(attributes, _HOST)),
        "path": path,
        "query": query,
        "route": _text(attributes.get(attrs.HTTP_ROUTE)),
        "status_code": int(status) if isinstance(status, (int, str)) and str(status).isdigit() else None,
        "referrer": _text(attributes.get(attrs.REFERRER)),
        "locale": _text(attributes.get(attrs.LOCALE)),
        "user_agent": _text(_first(attributes, _USER_AGENT)),
        "session_id": _text(attributes.get(attrs.SESSION_ID)),
    }
    if query and "utm_" in query.lower():
        for key, value in parse_qsl(query, keep_blank_values=False):
            field = _UTM_KEYS.get(key.lower())
            if field and field not in fields:
                fields[field] = value[:256]
    if not (attributes.get(attrs.PRIVACY_SIGNAL) and config.honor_privacy_signals):
        fields["client_address"] = _text(attributes.get(attrs.CLIENT_ADDRESS))
        fields["user_id"] = _text(attributes.get(attrs.USER_ID))
        fields["user_name"] = _text(attributes.get(attrs.USER_NAME))
        fields["user_email"] = _text(attributes.get(attrs.USER_EMAIL))
        fields["visitor_id"] = _text(attributes.get(attrs.VISITOR_ID))
    return fields


def _wants_pageview(event: AnalyticsEvent, attributes: Mapping[str, Any], config: Config) -> bool:
    if config.ignore_bots and attributes.get(attrs.BOT):
        return False
    if event.method is not None and event.method.upper() not in config.pageview_methods:
        return False
    if config.pageview_filter is None:
        return True
    try:
        return bool(config.pageview_filter(event))
    except Exception as exc:
        # A broken filter is the user's code: keep the pageview, count the failure.
        report_internal_error("pageview_filter", exc, user_code=True)
        return True


def _path_and_query(attributes: Mapping[str, Any]) -> tuple[Optional[str], Optional[str]]:
    """Path and (already scrubbed) query: stable ``url.path``/``url.query``, else the old names.

    The old ASGI semconv puts only the path in ``http.target`` and the query in ``http.url``.
    """
    path = attributes.get("url.path")
    query = attributes.get("url.query")
    if path is None:
        target = attributes.get("http.target")
        if isinstance(target, str):
            path, _, target_query = target.partition("?")
            query = query or target_query or None
    if query is None:
        full = attributes.get("url.full") or attributes.get("http.url")
        if isinstance(full, str) and "?" in full:
            query = full.split("?", 1)[1].split("#", 1)[0]
    return _text(path), _text(query) or None


def _meta(event_attributes: Mapping[str, Any]) -> dict[str, MetaValue]:
    prefix = attrs.EVENT_META_PREFIX
    return {
        key[len(prefix) :]: value
        for key, value in event_attributes.items()
        if key.startswith(prefix) and isinstance(value, (str, int, float, bool))
    }


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _datetime(nanoseconds: Optional[int]) -> datetime:
    if nanoseconds is None:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(nanoseconds / 1e9, tz=timezone.utc)


def _duration_ms(span: ReadableSpan) -> Optional[float]:
    if span.start_time is None or span.end_time is None:
        return None
    return round((span.end_time - span.start_time) / 1e6, 3)


def _derived_id(trace_id: str, span_id: str, kind: str, index: int) -> str:
    """A UUID (version 4 layout) that is the same every time the same span is converted."""
    digest = hashlib.blake2b(f"{trace_id}:{span_id}:{kind}:{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))

"""Finished server spans to analytics events: one pageview, its errors, its custom events.

The conversion reads only the span, after the middleware has put it under the TagPolicy, so
an event can never hold what the span was not allowed to hold. It is a pure function of the
span and the analytics rules, and event ids are derived from the span's ids, so converting
the same span twice (once per sink, or after a restart) gives identical events and
idempotent backends do not double count.

It runs once per request, so it is written for speed: the request's fields are read once
into one row template, filled by name (each field's place comes from ``EventRecord``'s
field list), and each event is a copy of it with its own few fields set, made a plain
tuple (``EventRow``: the collector untracks it; see ``events.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from hashlib import blake2b
from typing import Any, Optional
from urllib.parse import unquote_plus

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from .. import _limits
from .. import attributes as attrs
from .._errors import report_internal_error
from .._spans import span_attributes, span_events
from ..agents import NOT_PEOPLE
from ..config import Config
from ..policy import MAX_EXTRA_FIELDS, MAX_EXTRA_VALUE_CHARS, RESERVED_EXTRA_NAMES, TagPolicy
from .devices import describe
from .events import FIELDS, AnalyticsEvent, EventRow, as_events, encode_meta, page_of

_EXCEPTION = "exception"
_MAX_UTM = 256

# Where each field sits in a row, from the field list: rows are filled by name, so a field
# added to EventRecord needs only its reader here (a field nobody fills stays None).
_AT = {name: index for index, name in enumerate(FIELDS)}
_EVENT_ID, _TYPE, _TS_US, _TRACE_ID, _SPAN_ID, _NAME = (
    _AT[name] for name in ("event_id", "type", "ts_us", "trace_id", "span_id", "name")
)
_METHOD, _SCHEME, _HOST, _PATH, _QUERY, _ROUTE, _PAGE, _STATUS = (
    _AT[name] for name in ("method", "scheme", "host", "path", "query", "route", "page", "status_code")
)
_DURATION, _REFERRER, _LOCALE, _USER_AGENT, _CLIENT_ADDRESS, _VISITOR_ID, _SESSION_ID = (
    _AT[name]
    for name in (
        "duration_ms",
        "referrer",
        "locale",
        "user_agent",
        "client_address",
        "visitor_id",
        "session_id",
    )
)
_SERVICE, _ENVIRONMENT, _USER_EXTRA = _AT["service_name"], _AT["deployment_environment"], _AT["user_extra"]
# What devices.describe says of the user agent: client, browser, browser_version, os, device_type.
_DEVICE = slice(_AT["client"], _AT["client"] + 5)
_CLIENT = _AT["client"]
# What a filtered event (a bot's, monitor's or script's request) keeps of the request's fields.
_FILTERED_KEEPS = tuple(
    _AT[name]
    for name in (
        "method",
        "scheme",
        "host",
        "route",
        "page",
        "status_code",
        "duration_ms",
        "user_agent",
        "client",
        "browser",
        "browser_version",
        "os",
        "device_type",
        "service_name",
        "deployment_environment",
        "trace_id",
        "span_id",
    )
)
_POSTHOG_DISTINCT_ID = _AT["posthog_distinct_id"]
_ERROR_TYPE, _ERROR_MESSAGE, _ERROR_STACKTRACE, _META = (
    _AT[name] for name in ("error_type", "error_message", "error_stacktrace", "meta_json")
)
# The policy's user fields: ``user_<field>`` side by side, in USER_FIELDS order (tests/test_conversion.py).
_USER = slice(_AT["user_id"], _AT["user_id"] + len(attrs.USER_FIELD_KEYS))
_NO_USER = (None,) * len(attrs.USER_FIELD_KEYS)
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_UTM_SLOT = {name: _AT[name] for name in UTM_FIELDS}
_EMPTY_ROW: EventRow = (None,) * len(FIELDS)


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
    request = _request_fields(span, attributes, config)
    request[_TRACE_ID], request[_SPAN_ID] = trace_id, span_id
    events: list[EventRow] = []
    start = span.start_time or 0
    if request_type == "http" and _pageview_method(request[_METHOD], config):
        end = span.end_time
        # The template itself: the events below set their own fields, and none has a duration.
        request[_TS_US] = start // 1000
        request[_DURATION] = round((end - start) / 1e6, 3) if end is not None and start else None
        if config.ignore_bots and (request[_CLIENT] in NOT_PEOPLE or attributes.get(attrs.BOT)):
            events.append(_filtered(request, prefix))
        else:
            request[_EVENT_ID] = _derived_id(prefix + "pageview:0")
            request[_TYPE] = "pageview"
            row = tuple(request)
            if config.pageview_filter is None or _filter_allows(config, row):
                events.append(row)
        request[_DURATION] = None
    for index, event in enumerate(span_events(span)):
        event_attributes: Mapping[str, Any] = event.attributes or _NONE
        kind = event_attributes.get(attrs.EVENT_TYPE)
        if event.name == _EXCEPTION and kind is None:
            error = request.copy()
            error[_EVENT_ID] = _derived_id(f"{prefix}error:{index}")
            error[_TYPE] = "error"
            error[_TS_US] = event.timestamp // 1000
            get = event_attributes.get
            error[_ERROR_TYPE] = _bounded(get("exception.type"), _limits.MAX_EXCEPTION_TYPE_CHARS)
            error[_ERROR_MESSAGE] = _bounded(get("exception.message"), _limits.MAX_EXCEPTION_MESSAGE_CHARS)
            error[_ERROR_STACKTRACE] = _bounded(
                get("exception.stacktrace"), _limits.MAX_EXCEPTION_STACKTRACE_CHARS
            )
            events.append(tuple(error))
        elif kind == "custom":
            given = event_attributes.get(attrs.EVENT_ID)
            custom = request.copy()
            custom[_EVENT_ID] = given if isinstance(given, str) else _derived_id(f"{prefix}custom:{index}")
            custom[_TYPE] = "custom"
            custom[_TS_US] = event.timestamp // 1000
            custom[_NAME] = event.name
            custom[_META] = encode_meta(_meta(event_attributes))
            events.append(tuple(custom))
    return events


_NONE: Mapping[str, Any] = {}
_TEXT_TYPES = {str, type(None)}


def _request_fields(span: ReadableSpan, attributes: Mapping[str, Any], config: Config) -> list[Any]:
    """The fields a request's events share, as a row template filled by name (its own fields None).

    The privacy signal (``Sec-GPC``/``DNT``) removes the user fields, the client address and
    the visitor id.
    """
    get = attributes.get
    row: list[Any] = list(_EMPTY_ROW)
    path = get("url.path")
    query = get("url.query")
    if path is None:
        path, query = _old_semconv_path_and_query(attributes)
    route = get(attrs.HTTP_ROUTE)
    status = get("http.response.status_code") or get("http.status_code")
    status = status if type(status) is int else _status(status)
    method = get("http.request.method") or get("http.method")
    row[_METHOD] = method
    row[_SCHEME] = get("url.scheme") or get("http.scheme")
    row[_HOST] = get(attrs.HOST) or get("server.address") or get("http.host") or get("net.host.name")
    row[_PATH] = path
    row[_QUERY] = query or None
    row[_ROUTE] = route
    row[_PAGE] = route or page_of(method, route, path, status)
    row[_STATUS] = status
    row[_REFERRER] = get(attrs.REFERRER)
    row[_LOCALE] = get(attrs.LOCALE)
    if query and ("tm_" in query or "TM_" in query):
        _fill_utm(row, query)
    agent = row[_USER_AGENT] = get("user_agent.original") or get("http.user_agent")
    row[_DEVICE] = describe(agent if type(agent) is str else None)
    row[_SESSION_ID] = get(attrs.SESSION_ID)
    row[_SERVICE], row[_ENVIRONMENT] = _resource_fields(span.resource)
    if not (config.honor_privacy_signals and get(attrs.PRIVACY_SIGNAL)):
        row[_CLIENT_ADDRESS] = get(attrs.CLIENT_ADDRESS)
        row[_VISITOR_ID] = get(attrs.VISITOR_ID)
        row[_POSTHOG_DISTINCT_ID] = get(attrs.POSTHOG_DISTINCT_ID)
        # Semantic-convention and our own attributes are strings; user fields set by other
        # code may not be, and the policy's outputs are.
        user = tuple(map(get, attrs.USER_FIELD_KEYS))
        if not _TEXT_TYPES.issuperset(map(type, user)):
            user = tuple(map(_text, user))
        row[_USER] = user
        if config.tag_policy.exports_extra:
            row[_USER_EXTRA] = _user_extra(attributes, config.tag_policy)
    return row


def _user_extra(attributes: Mapping[str, Any], policy: TagPolicy) -> Optional[str]:
    """The span's ``user.<name>`` extra fields the policy lets out, as compact JSON (None: none).

    The middleware set them in their policy form; what other code set under a name the policy
    drops stays out of the events, and sizes are held to the request side's caps.
    """
    found: dict[str, Any] = {}
    for key, value in attributes.items():
        if not key.startswith(attrs.USER_PREFIX):
            continue
        name = key[len(attrs.USER_PREFIX) :]
        if name in RESERVED_EXTRA_NAMES or policy.extra_mode(name) == "drop":
            continue
        if isinstance(value, str):
            value = value[:MAX_EXTRA_VALUE_CHARS]
        elif isinstance(value, float):
            if not math.isfinite(value):
                continue
        elif not isinstance(value, int) or not -(2**63) <= value < 2**63:
            continue
        found[name] = value
        if len(found) >= MAX_EXTRA_FIELDS:
            break
    return encode_meta(dict(sorted(found.items())))


class _ResourceFields:
    """``service.name`` and the deployment environment of a span's Resource, read once per Resource.

    A process has one Resource per tracer provider, so the last one seen is nearly always the
    span's: one identity check per span. The environment is the current semantic-convention
    key, ``deployment.environment.name``, else the older ``deployment.environment``.
    """

    def __init__(self) -> None:
        self._last: tuple[Optional[Resource], tuple[Optional[str], Optional[str]]] = (None, (None, None))

    def of(self, resource: Optional[Resource]) -> tuple[Optional[str], Optional[str]]:
        last, fields = self._last  # one read of one attribute: safe from any thread
        if resource is not last:
            attributes = resource.attributes if resource is not None else _NONE
            environment = attributes.get("deployment.environment.name") or attributes.get(
                "deployment.environment"
            )
            fields = (_text(attributes.get("service.name")), _text(environment))
            self._last = (resource, fields)
        return fields


_resource_fields = _ResourceFields().of


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


def _fill_utm(row: list[Any], query: str) -> None:
    """Set the row's ``UTM_FIELDS`` (``utm_source`` ... ``utm_content``) from the query: the
    first non-empty value of each."""
    for part in query.split("&"):
        if part[:4].lower() != "utm_":
            continue
        key, _, value = part.partition("=")
        slot = _UTM_SLOT.get(key.lower())
        if slot is None or not value or row[slot] is not None:
            continue
        row[slot] = (unquote_plus(value) if "%" in value or "+" in value else value)[:_MAX_UTM]


def _pageview_method(method: Optional[str], config: Config) -> bool:
    return method is None or method.upper() in config.pageview_methods


def _filtered(request: list[Any], prefix: str) -> EventRow:
    """The request of a bot, monitor or script, counted and stored, never a pageview (``name``:
    its client class). It keeps the method, host, route, page, status, duration and the agent
    with what that is; not the path, query, referrer, locale, campaign, address, user,
    visitor or session."""
    row: list[Any] = list(_EMPTY_ROW)
    for index in _FILTERED_KEEPS:
        row[index] = request[index]
    row[_EVENT_ID] = _derived_id(prefix + "filtered:0")
    row[_TYPE] = "filtered"
    row[_TS_US] = request[_TS_US]
    row[_NAME] = request[_CLIENT]
    return tuple(row)


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

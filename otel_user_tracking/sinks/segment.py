"""SegmentSink: Segment's HTTP tracking API (``POST {host}/v1/batch``), as analytics-python sends.

Pageviews are ``page`` calls (``name`` = the route, ``properties.path/url/referrer``);
custom events are ``track`` calls by name with meta as properties; errors are ``track``
calls named ``Exception Occurred`` (configurable). ``userId`` is the policy-processed user id,
and ``anonymousId`` the visitor id (beside ``userId`` too, as analytics.js keeps it after a
login). A visitor's first logged-in call (once per visitor, user and process) is preceded by
an ``identify`` call with ``userId``, ``anonymousId`` and the traits. ``context`` carries
``ip`` (only when the policy lets the event have a client address), ``userAgent``,
``locale``, ``page`` and ``campaign``.
``messageId`` is the event's ``event_id``, so Segment deduplicates retries. Limits are
Segment's: 32 KB per message (larger ones are dropped, counted, logged once) and 500 KB per
request (batches are split).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from ..analytics.events import AnalyticsEvent
from ..sink_urls import SinkURL
from ..version import __version__
from ._http import HTTPBatchSink, required_key
from ._identified import Pair, identify_id, visitor_pair

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1000  # analytics-python stays under 475 000 to leave room for the envelope
LIBRARY = {"name": "otel-user-tracking", "version": __version__}
# Event field -> Segment's name for it, in the message's context, its page and its campaign.
_CONTEXT = (("client_address", "ip"), ("user_agent", "userAgent"), ("locale", "locale"))
_PAGE = (("path", "path"), ("url", "url"), ("referrer", "referrer"))
_CAMPAIGN = (
    ("utm_source", "source"),
    ("utm_medium", "medium"),
    ("utm_campaign", "name"),
    ("utm_term", "term"),
    ("utm_content", "content"),
)


def _timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def to_segment(event: AnalyticsEvent, error_event_name: str = "Exception Occurred") -> dict[str, Any]:
    """One event as a Segment ``page`` or ``track`` message."""
    context: dict[str, Any] = {"library": LIBRARY, **event.renamed(_CONTEXT)}
    page = event.renamed(_PAGE)
    if event.query:
        page["search"] = f"?{event.query}"
    if page:
        context["page"] = page
    campaign = event.renamed(_CAMPAIGN)
    if campaign:
        context["campaign"] = campaign
    if event.session_id:
        context["sessionId"] = event.session_id
    if event.user_id:
        traits = event.user_traits()
        if traits:
            context["traits"] = traits
    context["traceId"], context["spanId"] = event.trace_id, event.span_id

    message: dict[str, Any] = {
        "context": context,
        "integrations": {},
        "timestamp": _timestamp(event.timestamp),
        "messageId": event.event_id,
    }
    if event.user_id:
        message["userId"] = event.user_id
        if event.visitor_id:  # kept after the login, as analytics.js keeps it
            message["anonymousId"] = event.visitor_id
    else:
        message["anonymousId"] = event.visitor_id or event.event_id
    properties: dict[str, Any] = {}
    if event.type == "pageview":
        message["type"] = "page"
        message["name"] = event.page or "/"
        properties.update(page)
        if event.route:
            properties["route"] = event.route
    else:
        message["type"] = "track"
        if event.type == "error":
            message["event"] = error_event_name
            properties.update(
                {
                    "type": event.error_type,
                    "message": event.error_message,
                    "stacktrace": event.error_stacktrace,
                    "route": event.route,
                    "path": event.path,
                }
            )
        else:
            message["event"] = event.name or "custom"
            properties.update(event.meta)
    if event.method:
        properties.setdefault("method", event.method)
    if event.status_code is not None:
        properties.setdefault("status_code", event.status_code)
    message["properties"] = {key: value for key, value in properties.items() if value is not None}
    return message


def to_segment_identify(event: AnalyticsEvent) -> dict[str, Any]:
    """The ``identify`` call tying the visitor (``anonymousId``) to the user, with their traits."""
    context: dict[str, Any] = {"library": LIBRARY, **event.renamed(_CONTEXT)}
    return {
        "type": "identify",
        "userId": event.user_id,
        "anonymousId": event.visitor_id,
        "traits": event.user_traits(),
        "context": context,
        "integrations": {},
        "timestamp": _timestamp(event.timestamp),
        "messageId": identify_id(event),
    }


class SegmentSink(HTTPBatchSink):
    """Send events to Segment (or a Segment-compatible endpoint such as RudderStack).

    Usage: ``SegmentSink("WRITE_KEY", url="https://events.eu1.segmentapis.com")``.

    Args:
        write_key: The source's write key; sent as the basic-auth user, never logged.
        url: ``https://api.segment.io`` (``https://events.eu1.segmentapis.com`` in the EU).
        error_event_name: The ``track`` event name for errors.
        timeout: Seconds per request before it is retried.
    """

    max_batch_size = 500
    max_event_bytes = MAX_MESSAGE_BYTES
    max_body_bytes = MAX_BATCH_BYTES
    path = "/v1/batch"

    def __init__(
        self,
        write_key: str,
        url: str = "https://api.segment.io",
        *,
        error_event_name: str = "Exception Occurred",
        timeout: float = 10.0,
    ) -> None:
        problem = "SegmentSink needs the source's write key (Source > Settings > API Keys)"
        self._write_key = required_key(write_key, problem)
        self.error_event_name = error_event_name
        super().__init__(url, kind="segment", timeout=timeout, secrets=(self._write_key,))

    def encode(self, event: AnalyticsEvent) -> dict[str, Any]:
        return to_segment(event, self.error_event_name)

    def identify(self, event: AnalyticsEvent) -> Optional[tuple[Pair, Any]]:
        pair = visitor_pair(event)
        return None if pair is None else (pair, to_segment_identify(event))

    def envelope(self) -> dict[str, Any]:
        # As analytics-python: the key both as basic-auth user and in the body.
        return {"sentAt": datetime.now(timezone.utc).isoformat(), "writeKey": self._write_key}

    def request_options(self) -> dict[str, Any]:
        return {"auth": (self._write_key, "")}


def from_url(parsed: SinkURL, error_event_name: Optional[str] = None) -> SegmentSink:
    """``segment+https://WRITE_KEY@api.segment.io``."""
    write_key, url = parsed.keyed("the write key goes in the user part of the URL")
    return SegmentSink(write_key, url=url, error_event_name=error_event_name or "Exception Occurred")

"""PostHogSink: the PostHog capture API (``POST {host}/batch/``), gzip, as the posthog SDK sends.

Events are shaped like the official ``posthog`` Python SDK's (checked field by field against
it in tests/test_sink_oracles.py): ``$pageview`` with ``$current_url``/``$pathname``/``$host``/
``$referrer``; errors as ``$exception`` with ``$exception_list``; custom events by name with
their meta as properties. ``distinct_id`` is the policy-processed user id, else the cookieless
visitor id with ``$process_person_profile: false`` so anonymous traffic creates no person
profiles (the frontend's ``X-POSTHOG-DISTINCT-ID`` instead, when it sent one). The first
logged-in event of a visitor (once per visitor, user and process) is preceded by a
``$identify`` event with ``$anon_distinct_id``, which merges what the visitor did before
logging in into the user's person. ``uuid`` is the event's ``event_id``: PostHog
deduplicates a retried batch.
``$ip`` is sent only when the policy lets the event have a client address; otherwise
``$geoip_disable`` stops PostHog from geolocating the sender's (the server's) address.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from ..analytics.events import AnalyticsEvent
from ..sink_urls import SinkURL
from ..version import __version__
from ._http import HTTPBatchSink, required_key
from ._identified import Pair, identify_id, visitor_pair
from ._traceback import parse_traceback

MAX_EVENT_BYTES = 900 * 1024  # the posthog SDK's MAX_MSG_SIZE
MAX_BATCH_BYTES = 5 * 1024 * 1024  # its BATCH_SIZE_LIMIT
LIB = "otel-user-tracking"
# Event field -> the property PostHog's SDK and UI know it by.
_PROPERTIES = (
    ("url", "$current_url"),
    ("path", "$pathname"),
    ("host", "$host"),
    ("route", "$route"),
    ("referrer", "$referrer"),
    ("user_agent", "$raw_user_agent"),
    ("locale", "$locale"),
    ("session_id", "$session_id"),
    ("client_address", "$ip"),
    ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"),
    ("utm_term", "utm_term"),
    ("utm_content", "utm_content"),
    ("method", "http_method"),
    ("status_code", "http_status_code"),
    ("duration_ms", "duration_ms"),
)


def _timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


def _exception_list(event: AnalyticsEvent) -> list[dict[str, Any]]:
    frames = [
        {
            "platform": "python",
            "filename": frame.path,
            "abs_path": frame.path,
            "function": frame.function,
            "module": None,
            "lineno": frame.lineno,
            "in_app": frame.in_app,
            "context_line": frame.context_line,
        }
        for frame in parse_traceback(event.error_stacktrace)
    ]
    entry: dict[str, Any] = {
        "type": event.error_type or "Error",
        "value": event.error_message or "",
        "mechanism": {"exception_id": 0, "type": "generic", "handled": False, "synthetic": False},
        "module": None,
    }
    if frames:
        entry["stacktrace"] = {"type": "raw", "frames": frames}
    return [entry]


def to_posthog(event: AnalyticsEvent) -> dict[str, Any]:
    """One event in the capture API's batch format."""
    properties: dict[str, Any] = {
        "$lib": LIB,
        "$lib_version": __version__,
        "$trace_id": event.trace_id,
        "$span_id": event.span_id,
    }
    properties.update(event.renamed(_PROPERTIES))
    if not event.client_address:
        properties["$geoip_disable"] = True
    if event.user_id:
        distinct_id = event.user_id
        person = event.user_traits()
        if person:
            properties["$set"] = person
    else:
        distinct_id = anonymous_id(event) or event.event_id
        properties["$process_person_profile"] = False
    if event.type == "pageview":
        name = "$pageview"
    elif event.type == "error":
        name = "$exception"
        properties["$exception_list"] = _exception_list(event)
        properties["$exception_level"] = "error"
        properties["$exception_type"] = event.error_type or "Error"
        properties["$exception_message"] = event.error_message or ""
    else:
        name = event.name or "custom"
        properties.update(event.meta)
    return {
        "event": name,
        "distinct_id": distinct_id,
        "properties": properties,
        "timestamp": _timestamp(event.timestamp),
        "uuid": event.event_id,
    }


def anonymous_id(event: AnalyticsEvent) -> Optional[str]:
    """Who the event is before a login: the frontend's distinct id (``X-POSTHOG-DISTINCT-ID``,
    so backend and frontend events are one person), else the cookieless visitor id."""
    return event.posthog_distinct_id or event.visitor_id


def to_posthog_identify(event: AnalyticsEvent, anonymous: str) -> dict[str, Any]:
    """The ``$identify`` event merging the ``anonymous`` distinct id into the event's user:
    PostHog's ingestion links the anonymous person's events (those sent before too) to them."""
    properties: dict[str, Any] = {"$lib": LIB, "$lib_version": __version__, "$anon_distinct_id": anonymous}
    traits = event.user_traits()
    if traits:
        properties["$set"] = traits
    if not event.client_address:
        properties["$geoip_disable"] = True
    return {
        "event": "$identify",
        "distinct_id": event.user_id,
        "properties": properties,
        "timestamp": _timestamp(event.timestamp),
        "uuid": identify_id(event),
    }


class PostHogSink(HTTPBatchSink):
    """Send events to PostHog's capture API.

    Usage: ``PostHogSink("phc_...", url="https://eu.i.posthog.com")``.

    Args:
        api_key: The project API key (``phc_...``); sent in the body, never logged.
        url: ``https://us.i.posthog.com``, ``https://eu.i.posthog.com`` or a self-hosted URL.
        timeout: Seconds per request before it is retried.
    """

    max_batch_size = 1000
    max_event_bytes = MAX_EVENT_BYTES
    max_body_bytes = MAX_BATCH_BYTES
    gzip_body = True
    path = "/batch/"

    def __init__(self, api_key: str, url: str = "https://us.i.posthog.com", *, timeout: float = 10.0) -> None:
        problem = "PostHogSink needs the project API key (Project settings > Project API key)"
        self._api_key = required_key(api_key, problem)
        super().__init__(url, kind="posthog", timeout=timeout, secrets=(self._api_key,))

    def encode(self, event: AnalyticsEvent) -> dict[str, Any]:
        return to_posthog(event)

    def identify(self, event: AnalyticsEvent) -> Optional[tuple[Pair, Any]]:
        pair = visitor_pair(event, anonymous_id(event))
        return None if pair is None else (pair, to_posthog_identify(event, pair[0]))

    def envelope(self) -> dict[str, Any]:
        return {
            "historical_migration": False,
            "sent_at": _timestamp(datetime.now(timezone.utc)),
            "api_key": self._api_key,
        }


def from_url(parsed: SinkURL) -> PostHogSink:
    """``posthog+https://PROJECT_API_KEY@us.i.posthog.com``."""
    api_key, url = parsed.keyed("the project API key goes in the user part of the URL")
    return PostHogSink(api_key, url=url)

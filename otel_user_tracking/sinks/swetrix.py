"""SwetrixSink: the Swetrix Events API, one request per event, as the Swetrix guides show.

Pageviews ``POST {base}`` (``pid``, ``pg``, ``lc``, ``ref``, ``so``, ``me``, ``ca``, ``meta``),
custom events ``POST {base}/custom`` (``pid``, ``ev``, ``pg``, ``meta``), errors
``POST {base}/error`` (``pid``, ``name``, ``message``, ``stackTrace``, ``pg``, ``lc``, ``meta``).
Every request carries the visitor's ``User-Agent`` and, where the policy lets the event have
an address, ``X-Client-IP-Address``: Swetrix derives unique visitors from the two, so with
``ip="drop"`` it counts visitors less precisely. ``profileId`` is the policy-processed user id.
A visitor's first logged-in event (once per visitor, user and process) is preceded by
``POST {base}/identify`` (``pid``, ``profileId``, ``traits``), with which Swetrix links the
anonymous profile it derives from the address and agent to the user's: only where the
event has an address (without one Swetrix would derive it from this server's address).

Swetrix takes one event per request, so a batch is sent concurrently over the pooled
connections (at most ``concurrency`` at once) and only the events that failed with a
retryable answer go back to the pipeline; events Swetrix refuses (400, 402, 403) are logged
with what the status means (logged once per kind by the pipeline) and counted as failed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, Optional

from ..analytics.events import AnalyticsEvent
from ..analytics.sink import (
    PermanentSinkError,
    RetryableSinkError,
    SendResult,
    SinkError,
    configuration_identity,
)
from ..sink_urls import SinkURL, mask_url, sink_name
from ._http import HTTPTransport, normalized_url
from ._identified import IdentifiedPairs, Pair, visitor_pair

PROJECT_ID = re.compile(r"^[A-Za-z0-9-]{12}$")
MAX_EVENT_NAME = 256
MAX_TRAITS_CHARS = 2000  # Swetrix's limit on a profile's traits, keys and values together
_MEANING = {
    400: "Swetrix rejected the event (an unknown project id or an invalid field)",
    402: "the Swetrix account is over its plan's event limit",
    403: "the Swetrix project refuses events (disabled, or this origin/IP is not allowed)",
}


def _meta(values: dict[str, Any]) -> Optional[dict[str, str]]:
    """Swetrix metadata values are strings; empty metadata is left out."""
    meta = {
        key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in values.items()
    }
    return meta or None


def to_swetrix(event: AnalyticsEvent, project_id: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(path suffix, JSON payload, headers) of the request for one event."""
    payload: dict[str, Any] = {"pid": project_id}
    page = event.page
    if event.type == "pageview":
        suffix = ""
        fields = {
            "pg": page,
            "lc": event.locale,
            "ref": event.referrer,
            "so": event.utm_source,
            "me": event.utm_medium,
            "ca": event.utm_campaign,
        }
        meta = _meta({"method": event.method or "", "status": event.status_code or ""})
    elif event.type == "custom":
        suffix = "/custom"
        fields = {"ev": (event.name or "custom")[:MAX_EVENT_NAME], "pg": page}
        meta = _meta(dict(event.meta))
    else:
        suffix = "/error"
        fields = {
            "name": event.error_type or "Error",
            "message": event.error_message,
            "stackTrace": event.error_stacktrace,
            "pg": page,
            "lc": event.locale,
        }
        meta = _meta({"trace_id": event.trace_id})
    payload.update({key: value for key, value in fields.items() if value})
    if meta:
        payload["meta"] = meta
    if event.user_id:
        payload["profileId"] = event.user_id
    headers = {"User-Agent": event.user_agent or ""}
    if event.client_address:
        headers["X-Client-IP-Address"] = event.client_address
    return suffix, payload, headers


def to_swetrix_identify(event: AnalyticsEvent, project_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(JSON payload, headers) of ``POST {base}/identify``: Swetrix links the anonymous profile
    it derives from the address and agent to the user's profile, with the user's traits."""
    payload: dict[str, Any] = {"pid": project_id, "profileId": event.user_id}
    traits = {key: value for key, value in event.user_traits().items() if isinstance(value, str)}
    if traits and sum(len(key) + len(value) for key, value in traits.items()) <= MAX_TRAITS_CHARS:
        payload["traits"] = traits
    return payload, {"User-Agent": event.user_agent or "", "X-Client-IP-Address": event.client_address or ""}


def _identifies(event: AnalyticsEvent) -> Optional[Pair]:
    """The pair an identify would link; only with the visitor's address: without it Swetrix
    would derive the anonymous profile from this server's address, which every visitor shares."""
    return visitor_pair(event) if event.client_address else None


class SwetrixSink:
    """Send events to Swetrix (cloud or self-hosted).

    Args:
        project_id: The 12-character project id from the Swetrix dashboard.
        url: ``https://api.swetrix.com/log``, or your self-hosted ``.../log`` URL.
        concurrency: Requests in flight at once (and pooled connections).
        timeout: Seconds per request before that event is retried.
    """

    remote = True  # sends over the network: durable delivery goes through the outbox

    max_batch_size = 100

    def __init__(
        self,
        project_id: str,
        url: str = "https://api.swetrix.com/log",
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
    ) -> None:
        if not PROJECT_ID.match(project_id or ""):
            raise ValueError(
                "Swetrix project id must be 12 letters, digits or dashes (Project settings > Project ID)"
            )
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.project_id = project_id
        self.url = url.rstrip("/")
        self.name = sink_name("swetrix", self.url)
        self._transport = HTTPTransport(
            self.name, timeout=timeout, pool_size=concurrency, secrets=(project_id,)
        )
        self._identified = IdentifiedPairs()
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="otel-user-tracking-swetrix"
        )

    @cached_property
    def identity(self) -> str:
        """Digest of the URL and project id: keys the sink's outbox rows."""
        return configuration_identity("swetrix", normalized_url(self.url), self.project_id)

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        first_of: dict[Pair, AnalyticsEvent] = {}  # the event that carries a new pair's identify
        for event in batch:
            pair = _identifies(event)
            if pair is not None and pair not in self._identified:
                first_of.setdefault(pair, event)
        linking = {id(event): pair for pair, event in first_of.items()}
        outcomes = list(self._pool.map(lambda event: self._send_one(event, linking.get(id(event))), batch))
        retry = [event for event, error in zip(batch, outcomes) if isinstance(error, RetryableSinkError)]
        refused = [error for error in outcomes if isinstance(error, PermanentSinkError)]
        if not retry and not refused:
            return None
        first = refused[0] if refused else next(error for error in outcomes if error is not None)
        waits = [error.retry_after for error in outcomes if isinstance(error, RetryableSinkError)]
        return SendResult(
            retry=retry,
            retry_after=max((wait for wait in waits if wait is not None), default=None),
            failed=len(refused),
            reason=f"{len(retry) + len(refused)} of {len(batch)} events failed: {self._explain(first)}",
            kind=first.kind,
        )

    def _send_one(self, event: AnalyticsEvent, pair: Optional[Pair] = None) -> Optional[SinkError]:
        suffix, payload, headers = to_swetrix(event, self.project_id)
        try:
            if pair is not None:  # the identify first; refused for good, it is not tried again
                identify, identify_headers = to_swetrix_identify(event, self.project_id)
                with contextlib.suppress(PermanentSinkError):
                    self._transport.post_json(self.url + "/identify", identify, headers=identify_headers)
                self._identified.remember(pair)
            self._transport.post_json(self.url + suffix, payload, headers=headers)
        except SinkError as exc:
            return exc
        return None

    @staticmethod
    def _explain(error: SinkError) -> str:
        """The refusal with what its status means for a Swetrix project."""
        match = re.search(r"HTTP (\d{3})", str(error))
        meaning = _MEANING.get(int(match.group(1))) if match else None
        return f"{meaning}: {error}" if meaning and isinstance(error, PermanentSinkError) else str(error)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._transport.close()

    def __repr__(self) -> str:
        return f"SwetrixSink(project_id='***', url={mask_url(self.url)!r})"


def from_url(parsed: SinkURL) -> SwetrixSink:
    """``swetrix+https://PROJECT_ID@api.swetrix.com/log`` (self-hosted: any host and path)."""
    project_id, url = parsed.keyed("the project id goes in the user part of the URL")
    if not PROJECT_ID.match(project_id):
        raise parsed.error("the project id must be 12 letters, digits or dashes")
    return SwetrixSink(project_id, url=url)

"""WebhookSink: JSON batches to any HTTP endpoint, for users' own pipelines.

Body: ``{"batch": [event, ...], "sentAt": ISO-8601}`` where each event is
``AnalyticsEvent.to_dict()``. Receivers should deduplicate on ``event_id``: a batch retried
after a timeout may arrive twice.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from ..analytics.events import AnalyticsEvent
from ..env import WEBHOOK_AUTHORIZATION_ENV, webhook_authorization
from ..sink_urls import SinkURL
from ._http import HTTPBatchSink


class WebhookSink(HTTPBatchSink):
    """POST batches of events as JSON to ``url``.

    Usage: ``WebhookSink("https://hooks.example/analytics", authorization="Bearer ...")``.

    Args:
        url: ``https://host/path`` (no credential in the URL; use ``authorization``).
        authorization: Value of the ``Authorization`` header, e.g. ``Bearer …``; never logged.
        timeout: Seconds to wait for the endpoint before the batch is retried.
        gzip: Compress bodies (``Content-Encoding: gzip``).
    """

    max_batch_size = 500
    max_event_bytes = 1024 * 1024
    max_body_bytes = 5 * 1024 * 1024

    def __init__(
        self, url: str, *, authorization: Optional[str] = None, timeout: float = 10.0, gzip: bool = False
    ) -> None:
        if authorization is not None and any(char in authorization for char in "\r\n\0"):
            raise ValueError("WebhookSink: the authorization value must not contain CR, LF or NUL")
        secrets = [authorization or ""]
        if authorization and " " in authorization:
            secrets.append(authorization.split(" ", 1)[1])  # the token of "Bearer <token>"
        super().__init__(url, kind="webhook", timeout=timeout, secrets=secrets)
        self._headers = {"Authorization": authorization} if authorization else {}
        self.gzip_body = gzip

    def encode(self, event: AnalyticsEvent) -> dict[str, Any]:
        return event.to_dict()

    def envelope(self) -> dict[str, Any]:
        return {"sentAt": datetime.now(timezone.utc).isoformat()}

    def request_options(self) -> dict[str, Any]:
        return {"headers": self._headers}


def from_url(parsed: SinkURL) -> WebhookSink:
    """``webhook+https://host/path``; the ``Authorization`` header comes from the environment."""
    if parsed.credential:
        raise parsed.error(f"put the credential in {WEBHOOK_AUTHORIZATION_ENV}, not in the URL")
    if not parsed.host:
        raise parsed.error("no host")
    return WebhookSink(parsed.base_url, authorization=webhook_authorization())

"""WebhookSink: JSON batches to any HTTP endpoint, for users' own pipelines.

Body: ``{"batch": [event, ...], "sentAt": ISO-8601}`` where each event is
``AnalyticsEvent.to_dict()``. Receivers should deduplicate on ``event_id``: a batch retried
after a timeout may arrive twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Optional

from ..analytics.events import AnalyticsEvent
from ._http import HTTPTransport
from ._url import SinkURL

AUTHORIZATION_ENV = "OTEL_PYTHON_USER_TRACKING_WEBHOOK_AUTHORIZATION"


class WebhookSink:
    """POST batches of events as JSON to ``url``.

    Args:
        url: ``https://host/path`` (no credential in the URL; use ``authorization``).
        authorization: Value of the ``Authorization`` header, e.g. ``Bearer …``; never logged.
        timeout: Seconds to wait for the endpoint before the batch is retried.
        gzip: Compress bodies (``Content-Encoding: gzip``).
    """

    max_batch_size = 500

    def __init__(
        self, url: str, *, authorization: Optional[str] = None, timeout: float = 10.0, gzip: bool = False
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.name = f"webhook({url.split('://', 1)[1].split('/', 1)[0]})"
        self._headers = {"Authorization": authorization} if authorization else {}
        self._gzip = gzip
        self._transport = HTTPTransport(self.name, timeout=timeout)

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        payload = {
            "batch": [event.to_dict() for event in batch],
            "sentAt": datetime.now(timezone.utc).isoformat(),
        }
        self._transport.post_json(self.url, payload, headers=self._headers, gzip_body=self._gzip)

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"


def from_url(parsed: SinkURL) -> WebhookSink:
    """``webhook+https://host/path``; the ``Authorization`` header comes from the environment."""
    if parsed.credential:
        raise parsed.error(f"put the credential in {AUTHORIZATION_ENV}, not in the URL")
    if not parsed.host:
        raise parsed.error("no host")
    return WebhookSink(parsed.base_url, authorization=os.environ.get(AUTHORIZATION_ENV) or None)

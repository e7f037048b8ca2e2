"""The sink contract: map a batch of events to one backend and classify its answer.

The pipeline owns batching, retries, backoff and shutdown; a sink only sends and says
whether a failure is worth retrying.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, runtime_checkable

from ..analytics.events import AnalyticsEvent


class SinkError(Exception):
    """A batch could not be delivered. Messages never contain credentials or event data."""


class RetryableSinkError(SinkError):
    """Worth retrying: network errors, timeouts, 408, 429 and 5xx.

    Args:
        message: What went wrong, safe to log.
        retry_after: Seconds the backend asked us to wait (``Retry-After``), if any.
        remaining: The events still undelivered when a sink delivered part of the batch;
            None means the whole batch.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        remaining: Optional[Sequence[AnalyticsEvent]] = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.remaining = remaining


class PermanentSinkError(SinkError):
    """Not worth retrying: the backend refused the data (4xx other than 408/429)."""


@runtime_checkable
class Sink(Protocol):
    """One analytics backend.

    ``name`` identifies the sink in logs and metrics and never contains a credential.
    ``max_batch_size`` caps how many events the pipeline hands to one ``send`` call; sinks
    with byte limits split further inside ``send``.
    """

    name: str
    max_batch_size: int

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        """Deliver the batch or raise ``RetryableSinkError`` / ``PermanentSinkError``."""

    def close(self) -> None:
        """Release connections and files; called once, after the last ``send``."""

"""The sink contract: map a batch of events to one backend and say what became of it.

The pipeline owns batching, retries, backoff, counting and shutdown; a sink only sends and
reports the outcome, in one of three ways:

* return ``None``: every event was delivered;
* return a ``SendResult``: some were delivered and the rest are named: to ``retry``, or
  counted as ``dropped`` (no request could carry them) or ``failed`` (refused for good);
* raise ``RetryableSinkError`` / ``PermanentSinkError``: the whole batch failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

from ..analytics.events import AnalyticsEvent


class SinkError(Exception):
    """A batch could not be delivered. Messages never contain credentials or event data.

    Args:
        message: What went wrong, safe to log.
        kind: A short, bounded name for this kind of failure (``HTTP 5xx``, ``network``,
            ``locked``): failures of one kind are logged once per period, whatever the
            message's details.
    """

    def __init__(self, message: str, *, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__


class RetryableSinkError(SinkError):
    """Worth retrying: network errors, timeouts, 408, 429 and 5xx.

    Args:
        message: What went wrong, safe to log.
        retry_after: Seconds the backend asked us to wait (``Retry-After``), if any.
        kind: See ``SinkError``.
    """

    def __init__(
        self, message: str, *, retry_after: Optional[float] = None, kind: Optional[str] = None
    ) -> None:
        super().__init__(message, kind=kind)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """Not worth retrying: the backend refused the data (4xx other than 408/429)."""


@dataclass(frozen=True)
class SendResult:
    """What became of a batch that was not simply delivered whole.

    Events neither in ``retry`` nor counted in ``dropped``/``failed`` were delivered.

    Args:
        retry: Events that failed with a retryable answer; the pipeline sends them again.
        retry_after: Seconds the backend asked us to wait before that, if it said.
        dropped: Events no request could carry (e.g. over the backend's size limit).
        failed: Events the backend refused for good.
        reason: Why some were not delivered, safe to log (no payload, no credential).
        kind: A short, bounded name for that reason (see ``SinkError``).
    """

    retry: Sequence[AnalyticsEvent] = ()
    retry_after: Optional[float] = None
    dropped: int = 0
    failed: int = 0
    reason: str = ""
    kind: str = ""


@runtime_checkable
class Sink(Protocol):
    """One analytics backend.

    ``name`` identifies the sink in logs and metrics and never contains a credential.
    ``max_batch_size`` caps how many events the pipeline hands to one ``send`` call; sinks
    with byte limits split further inside ``send``. Optionally, ``preferred_batch_size``
    (a local writer whose bigger batches cost less an event) and ``takes_rows = True`` (the
    sink reads events only as tuples of ``FIELDS``: it may get the pipeline's plain
    ``EventRow``s instead of ``AnalyticsEvent``s). A remote sink should say ``identity``: a
    stable digest of its whole configuration (``configuration_identity``), which keys its
    rows in the outbox; two sinks may share a name, never an identity.
    """

    name: str
    max_batch_size: int

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        """Deliver the batch; see the module docstring for the three ways to answer."""

    def close(self) -> None:
        """Release connections and files; called once, after the last ``send``."""


_IDENTITY_SALT = b"otel-user-tracking sink identity v1"
_IDENTITY_ROUNDS = 10_000


def configuration_identity(kind: str, *parts: str) -> str:
    """A stable digest of a sink's configuration (scheme, host, path, credential, ...).

    It keys the sink's rows in the outbox file, so it must not let a reader of that file
    recover a credential: a salted, slowed hash (PBKDF2), never the values themselves.
    """
    material = "\0".join((kind, *parts)).encode("utf-8", "surrogatepass")
    digest = hashlib.pbkdf2_hmac("sha256", material, _IDENTITY_SALT, _IDENTITY_ROUNDS)
    return f"{kind}:{digest.hex()[:32]}"


def sink_identity(sink: Sink) -> str:
    """The sink's ``identity``, or for a sink without one a digest of its class and name."""
    identity = getattr(sink, "identity", None)
    if isinstance(identity, str) and identity:
        return identity
    return configuration_identity(f"{type(sink).__module__}.{type(sink).__qualname__}", sink.name)

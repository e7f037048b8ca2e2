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
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from .events import AnalyticsEvent


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

    Required: ``name`` identifies the sink in logs and metrics and never contains a
    credential; ``max_batch_size`` caps how many events the pipeline hands to one ``send``
    call (sinks with byte limits split further inside ``send``); ``send`` and ``close``.

    Optional, each with the default a sink that does not say gets (``SinkTraits``, read once
    by ``sink_traits``):

    * ``remote``: ``True`` for a sink that sends over the network: with durable delivery on,
      its events go through the outbox first. Default: local (no outbox); with durable
      delivery on, a sink that does not say is refused at start-up, so that a network sink
      cannot skip the outbox unnoticed.
    * ``identity``: a stable digest of the sink's whole configuration
      (``configuration_identity``), which keys its rows in the outbox; two sinks may share a
      name, never an identity. Default: a digest of the sink's class and name.
    * ``preferred_batch_size``: a local writer whose bigger batches cost less an event (the
      store) is woken at that many events. Default 0: batches of ``flush_at``.
    * ``takes_rows``: ``True`` when the sink reads events only as tuples of ``FIELDS``: it
      then gets the pipeline's plain ``EventRow``s instead of ``AnalyticsEvent``s. Default False.
    * ``takes_filtered``: ``True`` when the sink also gets the ``filtered`` events of bots',
      monitors' and scripts' requests, which the store counts. Default False: never sees them.
    * ``max_wait``: seconds an event may wait for its batch when less than ``flush_interval``
      (the store under durable delivery). Default None: ``flush_interval``.
    * ``ledger``: a ``DeliveryLedger`` the pipeline tells what the sink accepted and settled,
      where a ``kill -9`` leaves it (the store's in-flight ledger). Default None.
    """

    name: str
    max_batch_size: int

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        """Deliver the batch; see the module docstring for the three ways to answer."""

    def close(self) -> None:
        """Release connections and files; called once, after the last ``send``."""


class DeliveryLedger(Protocol):
    """Counts a sink's events held in memory, outside the process's memory (``Sink.ledger``)."""

    def accept(self, count: int) -> None:
        """``count`` events were queued for the sink."""

    def settle(self, count: int) -> None:
        """``count`` queued events were given up (dropped, failed, or left at shutdown)."""


@dataclass(frozen=True)
class SinkTraits:
    """What a sink says about itself beyond ``Sink``'s required members (see ``Sink``).

    ``remote`` is None for a sink that does not say: local, and refused under durable delivery.
    """

    remote: Optional[bool] = None
    identity: str = ""
    preferred_batch_size: int = 0
    takes_rows: bool = False
    takes_filtered: bool = False
    max_wait: Optional[float] = None
    ledger: Optional[DeliveryLedger] = None


def sink_traits(sink: Sink) -> SinkTraits:
    """The optional members ``sink`` declares, checked, with ``SinkTraits``' defaults for the rest.

    Raises ``ValueError`` naming the sink's class, the member and what it may be when a
    declared member has the wrong type.
    """
    declared = {
        item.name: getattr(sink, item.name) for item in fields(SinkTraits) if hasattr(sink, item.name)
    }
    owner = f"{type(sink).__qualname__} (sink {getattr(sink, 'name', '?')!r})"
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "remote": (lambda value: isinstance(value, bool), "True or False"),
        "identity": (lambda value: isinstance(value, str), "a string"),
        "preferred_batch_size": (
            lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "a whole number of events, 0 or more",
        ),
        "takes_rows": (lambda value: isinstance(value, bool), "True or False"),
        "takes_filtered": (lambda value: isinstance(value, bool), "True or False"),
        "max_wait": (
            lambda value: (
                value is None
                or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)
            ),
            "None or a number of seconds above 0",
        ),
        "ledger": (
            lambda value: (
                value is None
                or (callable(getattr(value, "accept", None)) and callable(getattr(value, "settle", None)))
            ),
            "None or an object with accept(count) and settle(count)",
        ),
    }
    for member, value in declared.items():
        valid, allowed = checks[member]
        if not valid(value):
            raise ValueError(f"{owner}: {member}={value!r} is not allowed; use {allowed}")
    return SinkTraits(**declared)


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
    identity = sink_traits(sink).identity
    if identity:
        return identity
    return configuration_identity(f"{type(sink).__module__}.{type(sink).__qualname__}", sink.name)

"""Shared HTTP transport for the HTTP sinks: pooled `requests` session, gzip, answer classification.

`requests` is already installed by the OTLP/HTTP exporter, so the HTTP sinks add no dependency.
Error messages carry the sink's safe name and the backend's status and (short) answer, never
the URL's credential or the payload.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import re
import time
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, Mapping, Optional, Sequence, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ..analytics.events import AnalyticsEvent
from ..analytics.sink import (
    PermanentSinkError,
    RetryableSinkError,
    SendResult,
    SinkError,
    configuration_identity,
)
from ..sink_urls import mask_url, sink_name
from ..version import __version__
from ._identified import IdentifiedPairs, Pair

T = TypeVar("T")
Linking = dict[int, Pair]  # id() of the event whose request tells a new pair -> the pair

RETRYABLE_STATUSES = frozenset({408, 429})
MAX_ANSWER_CHARS = 80
# Anything in a backend's answer that looks like it carries a credential (an echoed header or
# body field) is cut out before the answer reaches a log line.
_CREDENTIAL = re.compile(
    r"(?i)(authorization|proxy-authorization|api[_-]?key|write[_-]?key|token|secret|password|basic|bearer)"
    r"[\"':=\s]+(?:(?:bearer|basic)\s+)?[^\s,;\"'}]+"
)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
DEFAULT_TIMEOUT = 10.0


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def summarize_answer(text: str, secrets: Sequence[str] = ()) -> str:
    """A short, printable, credential-free excerpt of a backend's answer, for logs."""
    excerpt = text[: MAX_ANSWER_CHARS * 4]
    for secret in secrets:
        if secret:
            excerpt = excerpt.replace(secret, "***")
    excerpt = _CREDENTIAL.sub(lambda match: f"{match.group(1)}=***", excerpt)
    excerpt = _UNPRINTABLE.sub(" ", excerpt).strip()
    return excerpt[:MAX_ANSWER_CHARS] + ("…" if len(excerpt) > MAX_ANSWER_CHARS else "")


def classify_response(response: requests.Response, sink_name: str, secrets: Sequence[str] = ()) -> None:
    """Return on 2xx; raise ``RetryableSinkError`` on 408/429/5xx, ``PermanentSinkError`` otherwise.

    The error's message holds the status and a short sanitised excerpt of the answer, never
    the sink's credentials, even when the backend echoes the request.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    answer = summarize_answer(response.text or "", secrets)
    message = f"{sink_name}: HTTP {status}: {answer}" if answer else f"{sink_name}: HTTP {status}"
    kind = f"HTTP {status}" if status < 500 else f"HTTP {status // 100}xx"
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RetryableSinkError(message, retry_after=retry_after, kind=kind)
    raise PermanentSinkError(message, kind=kind)


class HTTPTransport:
    """A pooled session that posts JSON and turns every failure into a sink error.

    Args:
        sink_name: Safe name used in error messages.
        timeout: Connect and read timeout in seconds.
        pool_size: Connections kept per host (the concurrency bound of per-event sinks).
    """

    def __init__(
        self,
        sink_name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = 4,
        secrets: Sequence[str] = (),
    ) -> None:
        self.sink_name = sink_name
        self.secrets = tuple(secret for secret in secrets if secret)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = f"otel-user-tracking/{__version__}"
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post_json(self, url: str, payload: Any, **options: Any) -> requests.Response:
        """POST ``payload`` as JSON (``options`` as ``post_bytes``'); the 2xx response or a sink error."""
        return self.post_bytes(url, encode_json(payload), **options)

    def post_bytes(
        self,
        url: str,
        body: bytes,
        *,
        headers: Optional[Mapping[str, str]] = None,
        gzip_body: bool = False,
        auth: Optional[tuple[str, str]] = None,
    ) -> requests.Response:
        """POST an already encoded JSON body and return the 2xx response, or raise a sink error."""
        all_headers = {"Content-Type": "application/json"}
        if gzip_body:
            body = gzip.compress(body)
            all_headers["Content-Encoding"] = "gzip"
        if headers:
            all_headers.update(headers)
        try:
            response = self.session.post(url, data=body, headers=all_headers, auth=auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RetryableSinkError(f"{self.sink_name}: {type(exc).__name__}", kind="network") from None
        classify_response(response, self.sink_name, self.secrets)
        return response

    def close(self) -> None:
        self.session.close()


def normalized_url(url: str) -> str:
    """``url`` with its scheme and host lower-cased (how two spellings of one endpoint compare)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{authority.lower()}{slash}{path}"


def required_key(value: Optional[str], problem: str) -> str:
    """``value`` stripped of white space; ``ValueError(problem)`` when nothing is left."""
    key = (value or "").strip()
    if not key:
        raise ValueError(problem)
    return key


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, the byte form size limits are measured on."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def split_by_size(
    items: Sequence[tuple[T, bytes]], max_item_bytes: int, max_batch_bytes: int
) -> tuple[list[list[tuple[T, bytes]]], list[T]]:
    """Group (item, encoded) pairs into batches under ``max_batch_bytes``; oversized items apart.

    Returns the batches, in order, and the items larger than ``max_item_bytes`` (which no
    request could carry: the caller drops and counts them, never truncates them silently).
    """
    batches: list[list[tuple[T, bytes]]] = []
    oversized: list[T] = []
    current: list[tuple[T, bytes]] = []
    size = 0
    for item, encoded in items:
        length = len(encoded) + 1  # the comma between items
        if length > max_item_bytes:
            oversized.append(item)
            continue
        if current and size + length > max_batch_bytes:
            batches.append(current)
            current, size = [], 0
        current.append((item, encoded))
        size += length
    if current:
        batches.append(current)
    return batches, oversized


def join_json_array(encoded: Sequence[bytes]) -> bytes:
    """``[a,b,c]`` from already encoded JSON values, so each event is encoded once."""
    return b"[" + b",".join(encoded) + b"]"


class HTTPBatchSink(ABC):
    """The sinks that POST JSON batches (PostHog, Segment, the webhook): one send, one envelope.

    A subclass says how one event is encoded (``encode``), what else the body carries
    (``envelope``), where it goes (``path``, after the URL) and the backend's limits; this class splits
    the batch by bytes, splices the already encoded events into the envelope (each event is
    encoded once), posts the parts in order and reports what became of each event.
    """

    remote = True  # sends over the network: durable delivery goes through the outbox

    max_batch_size = 500
    max_event_bytes = 32 * 1024
    max_body_bytes = 500 * 1000
    gzip_body = False
    path = ""  # the API's path after the URL the user gives

    def __init__(
        self, url: str, *, kind: str, timeout: float = DEFAULT_TIMEOUT, secrets: Sequence[str] = ()
    ) -> None:
        name = sink_name(kind, url)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: the URL must start with http:// or https://, got {mask_url(url)!r}")
        self.url = url.rstrip("/")
        self.name = name
        self._kind = kind
        self._transport = HTTPTransport(name, timeout=timeout, secrets=secrets)
        self._identified = IdentifiedPairs()

    @cached_property
    def identity(self) -> str:
        """Digest of the kind, scheme, host, path and credential: keys the sink's outbox rows."""
        endpoint = normalized_url(self.url + self.path)
        return configuration_identity(self._kind, endpoint, *self._transport.secrets)

    @abstractmethod
    def encode(self, event: AnalyticsEvent) -> Any:
        """The JSON value of one event (encoded by ``send``): each backend's own mapping."""

    def envelope(self) -> dict[str, Any]:
        """The body's fields besides ``batch``, made per request (a ``sentAt``, a key)."""
        return {}

    def request_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``HTTPTransport.post_bytes`` (headers, auth)."""
        return {}

    def identify(self, event: AnalyticsEvent) -> Optional[tuple[Pair, Any]]:
        """The backend's message telling that the event's anonymous id is its user, with the
        (anonymous id, user id) pair it links; None when there is nothing to link. Sent once
        per pair and process, in the request of the pair's first event, just before it."""
        return None

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        encoded, linking = self._encode(batch)
        parts, oversized = split_by_size(encoded, self.max_event_bytes, self.max_body_bytes - 1024)
        too_large = f"{len(oversized)} events over {self.max_event_bytes // 1024} KiB" if oversized else ""
        for index, part in enumerate(parts):
            try:
                self._post(part)
                for event, _ in part:
                    pair = linking.get(id(event))
                    if pair is not None:
                        self._identified.remember(pair)
            except SinkError as exc:
                if index == 0 and not oversized:
                    raise  # the whole batch failed
                rest = [event for later in parts[index:] for event, _ in later]
                reason = f"{exc}; {too_large}" if too_large else str(exc)
                if isinstance(exc, RetryableSinkError):
                    return SendResult(
                        retry=rest, retry_after=exc.retry_after, dropped=len(oversized), reason=reason
                    )
                return SendResult(failed=len(rest), dropped=len(oversized), reason=reason)
        return SendResult(dropped=len(oversized), reason=too_large, kind="too large") if oversized else None

    def _encode(self, batch: Sequence[AnalyticsEvent]) -> tuple[list[tuple[AnalyticsEvent, bytes]], Linking]:
        """Each event's bytes, an identify message first where a pair is new (once a batch);
        and which event carries which pair, remembered once its request was accepted."""
        encoded = []
        linking: Linking = {}
        told = self._identified
        for event in batch:
            data = encode_json(self.encode(event))
            link = self.identify(event) if event.user_id else None
            if link is not None and link[0] not in told and link[0] not in linking.values():
                linking[id(event)] = link[0]
                data = encode_json(link[1]) + b"," + data  # one more element of the batch array
            encoded.append((event, data))
        return encoded, linking

    def _post(self, part: Sequence[tuple[AnalyticsEvent, bytes]]) -> None:
        head = encode_json(self.envelope())
        separator = b"," if len(head) > 2 else b""
        body = head[:-1] + separator + b'"batch":' + join_json_array([data for _, data in part]) + b"}"
        self._transport.post_bytes(
            self.url + self.path, body, gzip_body=self.gzip_body, **self.request_options()
        )

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={mask_url(self.url)!r})"

"""A client behind a trusted proxy cannot choose its recorded address by padding its headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_user_tracking as out
from otel_user_tracking.request.client_address import parse_ip
from otel_user_tracking.request.visitor import VisitorIdentifier

from ._asgi import http_scope, ok_app, serve

PROXY = "127.0.0.3"
REAL = "203.0.113.50"
FAKE = "6.6.6.6"


def _recorded_behind_proxy(
    headers: list[tuple[bytes, bytes]], tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> Mapping[str, Any]:
    """The attributes of the one span a request from the trusted proxy with ``headers`` makes."""
    policy = out.TagPolicy(ip="keep", trusted_proxies=[f"{PROXY}/32"])
    app = out.UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider, tag_policy=policy)
    base = [(b"host", b"127.0.0.2:8000"), (b"user-agent", b"Mozilla/5.0")]
    serve(app, http_scope(headers=[*base, *headers], client=(PROXY, 40000)))
    [span] = exporter.get_finished_spans()
    return span.attributes or {}


def _padded_chain(target_length: int, tail: str) -> str:
    """Junk hops, then ``tail``, exactly ``target_length`` characters in all."""
    return ("1.1.1.1, " * (target_length // 9 + 1) + tail)[-target_length:]


@pytest.mark.parametrize("length", [2047, 2048, 2049, 4096, 20_000])
@pytest.mark.parametrize("split_headers", [False, True], ids=["one-header", "proxy-adds-a-header"])
def test_padded_x_forwarded_for_cannot_push_the_proxy_hop_out(
    length: int,
    split_headers: bool,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """However long the client's own X-Forwarded-For, the hop the trusted proxy appended is the client."""
    client_part = _padded_chain(length, FAKE)
    if split_headers:
        headers = [(b"x-forwarded-for", client_part.encode()), (b"x-forwarded-for", REAL.encode())]
    else:
        headers = [(b"x-forwarded-for", f"{client_part}, {REAL}".encode())]
    attributes = _recorded_behind_proxy(headers, tracer_provider, span_exporter)
    assert attributes["client.address"] == REAL
    expected_visitor = VisitorIdentifier().visitor_id(REAL, "Mozilla/5.0")
    assert attributes["user_tracking.visitor_id"] == expected_visitor


@pytest.mark.parametrize("length", [2048, 20_000])
def test_padded_forwarded_cannot_push_the_proxy_hop_out(
    length: int, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """The same holds for RFC 7239 ``Forwarded``."""
    client_part = ", ".join(["for=1.1.1.1"] * (length // 13)) + f", for={FAKE}"
    headers = [(b"forwarded", f"{client_part}, for={REAL};proto=http".encode())]
    assert _recorded_behind_proxy(headers, tracer_provider, span_exporter)["client.address"] == REAL


def test_a_hop_cut_in_half_is_never_taken_for_an_address(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """When more hops than are kept are all trusted, the walk stops at a trusted hop, not a fragment."""
    hops = ", ".join(["127.0.0.3"] * 200)
    headers = [(b"x-forwarded-for", f"116.6.6.6, {hops}".encode())]
    assert _recorded_behind_proxy(headers, tracer_provider, span_exporter)["client.address"] == PROXY


def test_parse_ip_refuses_long_text_without_caching_it() -> None:
    """An address is short: longer text is not an address, whatever it ends with."""
    assert parse_ip(" " * 5000 + "1.2.3.4") is None
    assert parse_ip("1.2.3.4") == "1.2.3.4"

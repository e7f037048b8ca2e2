"""Client address resolution behind trusted proxies, and the end-to-end IP policy on spans."""

from __future__ import annotations

from typing import Optional

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_user_tracking import TagPolicy
from otel_user_tracking.policy import parse_networks
from otel_user_tracking.request.client_address import parse_ip, resolve_client_address

from ._apps import Tracing, bearer, fastapi_app, get, instrumented, new_tracing

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "xff", "forwarded", "expected"),
    [
        ("198.51.100.7", None, None, "198.51.100.7"),
        ("198.51.100.7", "1.2.3.4", None, "198.51.100.7"),  # untrusted peer: header ignored
        ("10.0.0.5", "203.0.113.9", None, "203.0.113.9"),
        ("10.0.0.5", "6.6.6.6, 203.0.113.9, 10.0.0.4", None, "203.0.113.9"),  # right to left
        ("10.0.0.5", "garbage, 203.0.113.9", None, "203.0.113.9"),
        ("10.0.0.5", "10.0.0.1, 10.0.0.2", None, "10.0.0.1"),  # all trusted: leftmost
        ("10.0.0.5", None, 'for=203.0.113.9;proto=https, for="10.0.0.4"', "203.0.113.9"),
        ("10.0.0.5", None, 'for="[2001:db9::1]:443"', "2001:db9::1"),
        ("10.0.0.5", "6.6.6.6", "for=203.0.113.9", "203.0.113.9"),  # Forwarded wins
        ("10.0.0.5", "not an ip", None, "10.0.0.5"),
        (None, "1.2.3.4", None, None),
    ],
)
def test_resolve_client_address(
    peer: Optional[str], xff: Optional[str], forwarded: Optional[str], expected: Optional[str]
) -> None:
    """Forwarding headers count only from trusted proxies and are walked right to left."""
    assert resolve_client_address(peer, xff, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_headers_are_never_believed() -> None:
    """Without trusted proxies a client cannot spoof its address."""
    assert resolve_client_address("10.0.0.5", "203.0.113.9", None, ()) == "10.0.0.5"


@pytest.mark.parametrize(
    ("text", "expected"), [("1.2.3.4:80", "1.2.3.4"), ("[::1]:80", "::1"), ('"::1"', "::1")]
)
def test_parse_ip_strips_ports_brackets_and_quotes(text: str, expected: str) -> None:
    """Addresses in headers come in several spellings."""
    assert parse_ip(text) == expected


def _payload(tracing: Tracing) -> bytes:
    return encode_spans(tracing.spans()).SerializeToString()


@pytest.mark.parametrize("native", [False, True], ids=["asgi-span", "fastapi-native-span"])
def test_ip_drop_removes_every_client_address_from_the_otlp_payload(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ip="drop" neither the peer nor any forwarded hop appears in the encoded OTLP spans."""
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-forwarded-for,forwarded"
    )
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=TagPolicy(ip="drop", trusted_proxies=["10.0.0.0/8"])):
        app = fastapi_app(tracing, native=native)
        headers = {**bearer("tok-jane"), "x-forwarded-for": "198.51.100.23, 10.0.0.4"}
        assert get(app, "/me", headers=headers, peer="10.0.0.5").status_code == 200
    payload = _payload(tracing)
    assert b"user.id" in payload
    for address in (b"198.51.100.23", b"10.0.0.4", b"10.0.0.5"):
        assert address not in payload
    assert "client.address" not in tracing.server_span("/me").attributes


def test_ip_anonymize_exports_only_the_anonymized_client_address() -> None:
    """With ip="anonymize" the real client (behind a trusted proxy) appears only as its /24."""
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=TagPolicy(ip="anonymize", trusted_proxies=["10.0.0.0/8"])):
        app = fastapi_app(tracing)
        headers = {"x-forwarded-for": "198.51.100.23"}
        assert get(app, "/public", headers=headers, peer="10.0.0.5").status_code == 200
    payload = _payload(tracing)
    assert b"198.51.100.23" not in payload
    assert b"10.0.0.5" not in payload
    assert tracing.server_span("/public").attributes["client.address"] == "198.51.100.0"


def test_ip_keep_with_untrusted_peer_ignores_spoofed_header() -> None:
    """A client that sends X-Forwarded-For without a trusted proxy keeps its real address."""
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=TagPolicy(ip="keep", trusted_proxies=["10.0.0.0/8"])):
        get(fastapi_app(tracing), "/public", headers={"x-forwarded-for": "1.1.1.1"}, peer="198.51.100.8")
    assert tracing.server_span("/public").attributes["client.address"] == "198.51.100.8"
    assert b"1.1.1.1" not in _payload(tracing)

"""Property-based tests: every request-side parser and policy function takes any input calmly."""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from otel_user_tracking.analytics.conversion import UTM_FIELDS, _fill_utm
from otel_user_tracking.analytics.events import FIELDS
from otel_user_tracking.config import DEFAULT_SCRUB_QUERY_KEYS
from otel_user_tracking.env import ENV_PREFIX, config_from_env
from otel_user_tracking.policy import TagPolicy, anonymize_ip, mask_email, parse_networks
from otel_user_tracking.request.bots import is_bot
from otel_user_tracking.request.client_address import (
    MAX_HOPS,
    forwarded_for,
    mentioned_addresses,
    parse_ip,
    resolve_client_address,
)
from otel_user_tracking.request.headers import read_facts
from otel_user_tracking.request.scrubbing import REDACTED, QueryScrubber, scrub_header_value
from otel_user_tracking.sinks import parse_sink_url

pytestmark = pytest.mark.slow

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.0/8"])
SCRUBBER = QueryScrubber(DEFAULT_SCRUB_QUERY_KEYS)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.one_of(ipv4, ipv6)
untrusted = addresses.filter(lambda a: not any(ipaddress.ip_address(a) in n for n in PROXIES))
hop_text = st.one_of(
    addresses,
    ipv6.map(lambda a: f"[{a}]:443"),
    ipv4.map(lambda a: f"{a}:8080"),
    st.text(max_size=30),
)
chain = st.lists(hop_text, max_size=60).map(", ".join)
header_text = st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=300)
raw_header = st.binary(max_size=300)


def _valid_or_none(value: Optional[str]) -> bool:
    if value is None:
        return True
    ipaddress.ip_address(value)
    return True


@FAST
@given(peer=st.one_of(st.none(), addresses, st.text(max_size=40)), xff=st.one_of(st.none(), chain),
       fwd=st.one_of(st.none(), chain.map(lambda c: c.replace(", ", ", for="))))  # fmt: skip
def test_client_address_is_always_an_address_or_none(
    peer: Optional[str], xff: Optional[str], fwd: Optional[str]
) -> None:
    """Whatever the headers say, the result is a valid address or None, and never raises."""
    assert _valid_or_none(resolve_client_address(peer, xff, fwd, PROXIES))
    for found in mentioned_addresses(peer, xff, fwd):
        assert isinstance(found, str)


@FAST
@given(peer=untrusted, xff=chain, fwd=chain)
def test_an_untrusted_peer_cannot_be_spoofed(peer: str, xff: str, fwd: str) -> None:
    """Forwarding headers from an untrusted peer never change the address."""
    assert resolve_client_address(peer, xff, f"for={fwd}", PROXIES) == parse_ip(peer)


@FAST
@given(padding=st.lists(hop_text, max_size=400).map(", ".join), client=untrusted)
def test_the_proxy_appended_hop_always_wins(padding: str, client: str) -> None:
    """A trusted proxy's appended hop is the client, however the client padded the header."""
    facts = read_facts(
        {"client": ("10.0.0.1", 1), "headers": [(b"x-forwarded-for", f"{padding}, {client}".encode())]}, ""
    )
    assert resolve_client_address(facts.peer, facts.x_forwarded_for, None, PROXIES) == client


@FAST
@given(st.text(max_size=2000))
def test_forwarded_for_is_bounded(text: str) -> None:
    """``Forwarded`` parsing never raises and keeps at most MAX_HOPS hops."""
    assert len(forwarded_for(text)) <= MAX_HOPS


@FAST
@given(st.text(max_size=200))
def test_parse_ip_answers_an_address_or_none(text: str) -> None:
    """Any text parses to a normalised address or None."""
    assert _valid_or_none(parse_ip(text))


KNOWN_HEADERS = [b"user-agent", b"referer", b"accept-language", b"x-forwarded-for", b"forwarded", b"host",
                 b"sec-gpc", b"dnt", b"x-session-id"]  # fmt: skip
header_lists = st.lists(st.tuples(st.sampled_from(KNOWN_HEADERS) | raw_header, raw_header), max_size=12)
odd_clients = st.one_of(st.none(), st.tuples(st.text(max_size=20), st.integers()), st.just(()))


@FAST
@given(headers=header_lists, client=odd_clients)
def test_read_facts_takes_any_headers(headers: list[tuple[bytes, bytes]], client: object) -> None:
    """Header bytes and client tuples of any shape give capped, printable facts."""
    facts = read_facts({"headers": headers, "client": client}, "x-session-id")
    assert facts.user_agent is None or (len(facts.user_agent) <= 512 and facts.user_agent.isprintable())
    assert facts.session_id is None or (len(facts.session_id) <= 128 and facts.session_id.isprintable())
    assert facts.referrer is None or len(facts.referrer) <= 2048
    locale = facts.locale
    assert locale is None or re.fullmatch(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", locale)


@FAST
@given(st.text(max_size=300))
def test_accept_language_gives_a_tag_or_none(value: str) -> None:
    """Any Accept-Language value gives a well-formed first tag or None."""
    facts = read_facts({"headers": [(b"accept-language", value.encode("utf-8"))]}, "")
    assert facts.locale is None or len(facts.locale) <= 256


sensitive_keys = st.builds(
    lambda prefix, word, suffix, upper: prefix + (word.upper() if upper else word) + suffix,
    st.sampled_from(["", "reset_", "new-", "user.", "x"]),
    st.sampled_from(["password", "token", "secret", "apiKey", "api_key", "email", "Session"]),
    st.sampled_from(["", "1", "Confirm", "_id", "Id", "[]"]),
    st.booleans(),
)
plain_keys = st.sampled_from(["q", "page", "utm_source", "utm_campaign", "sort", "lang", "ref"])
values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%", min_size=1, max_size=20)


@FAST
@given(pairs=st.lists(st.tuples(st.one_of(sensitive_keys, plain_keys), values), min_size=1, max_size=8),
       separators=st.lists(st.sampled_from(["&", ";"]), min_size=8, max_size=8))  # fmt: skip
def test_sensitive_values_never_survive_scrubbing(
    pairs: list[tuple[str, str]], separators: list[str]
) -> None:
    """Sensitive keys' values become REDACTED, other pairs stay byte for byte; scrubbing is idempotent."""
    query = "".join(f"{separators[i] if i else ''}{k}={v}" for i, (k, v) in enumerate(pairs))
    scrubbed = SCRUBBER.query(query)
    assert SCRUBBER.query(scrubbed) == scrubbed
    parts = re.split(r"[&;]", scrubbed)
    for (key, value), part in zip(pairs, parts):
        sensitive = SCRUBBER.sensitive(key)
        assert part == (f"{key}={REDACTED}" if sensitive else f"{key}={value}")
    for key, _ in pairs:
        if key in ("q", "page", "utm_source", "utm_campaign", "sort", "lang", "ref"):
            continue
        assert SCRUBBER.sensitive(key), key


@FAST
@given(st.text(max_size=500))
def test_scrubbing_any_text_never_raises(text: str) -> None:
    """Query, URL and header scrubbing take any text."""
    SCRUBBER.query(text)
    SCRUBBER.url(text)
    scrub_header_value("referer", text, SCRUBBER)


@FAST
@given(key=sensitive_keys, value=values, where=st.sampled_from(["?", "#", "?a=1#"]),
       base=st.sampled_from(["https://ref.example/p", "/p", ""]))  # fmt: skip
def test_referrers_lose_sensitive_values_in_query_and_fragment(
    key: str, value: str, where: str, base: str
) -> None:
    """A referrer's sensitive parameter is scrubbed in its query and in its fragment."""
    assume(value != REDACTED)
    url = f"{base}{where}{key}={value}"
    assert SCRUBBER.url(url).endswith(f"{key}={REDACTED}")


@FAST
@given(
    address=addresses,
    before=st.text(alphabet="abc ,;=", max_size=10),
    after=st.text(alphabet="abc ,;", max_size=10),
)
def test_captured_headers_never_keep_an_address(address: str, before: str, after: str) -> None:
    """An IP address anywhere in a captured header value is removed."""
    assert address not in scrub_header_value("x-anything", f"{before} {address} {after}", SCRUBBER)


@FAST
@given(st.text(max_size=600))
def test_utm_and_bots_take_any_text(text: str) -> None:
    """UTM parsing and the bot check never raise."""
    row: list[object] = [None] * len(FIELDS)
    _fill_utm(row, text)
    assert all(value is None for name, value in zip(FIELDS, row) if name not in UTM_FIELDS)
    assert isinstance(is_bot(text), bool)


@FAST
@given(st.text(max_size=200))
def test_policy_functions_take_any_text(text: str) -> None:
    """Masking, anonymising and hashing never raise and never echo a masked value whole."""
    policy = TagPolicy(id="hash", email="mask", name="mask", hash_key="test-key-" * 4)
    assert _valid_or_none(anonymize_ip(text))
    masked = mask_email(text)
    assert masked.endswith("***") or "***@" in masked
    assert len(policy.apply_id(text) or "0" * 64) == 64


@FAST
@given(st.text(max_size=200))
def test_sink_urls_fail_only_with_the_expected_form(text: str) -> None:
    """parse_sink_url raises nothing but ValueError, and then says what form it expected."""
    try:
        parse_sink_url(text)
    except ValueError as exc:
        message = str(exc)
        assert "expected" in message or "known sinks" in message or "use " in message, message


ENV_NAMES = ["ID", "NAME", "EMAIL", "IP", "ROLES", "HASH_KEY", "TRUSTED_PROXIES", "CHILD_SPANS",
             "INTERNAL_SPANS", "HONOR_PRIVACY_SIGNALS", "IGNORE_BOTS", "ANALYTICS_SAMPLER",
             "MIN_STATUS_TO_CAPTURE", "SESSION_HEADER", "SITE", "SCRUB_QUERY_KEYS",
             "EXCLUDED_URLS"]  # fmt: skip


@FAST
@given(name=st.sampled_from(ENV_NAMES), value=st.text(max_size=60))
@example(name="MIN_STATUS_TO_CAPTURE", value="²")  # a digit int() refuses: was a bare int() error
def test_env_values_fail_only_naming_the_variable(name: str, value: str) -> None:
    """config_from_env raises only ValueError, and the message names the variable."""
    try:
        config_from_env({ENV_PREFIX + name: value})
    except ValueError as exc:
        assert ENV_PREFIX + name in str(exc) or "=hash" in str(exc), str(exc)

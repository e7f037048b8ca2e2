"""The client address behind trusted proxies, and every address a request mentions.

``X-Forwarded-For`` and ``Forwarded`` are believed only when the direct peer is a trusted
proxy, and are walked right to left, skipping trusted hops: the first untrusted hop is the
client. Otherwise any client could claim any address. Only the rightmost ``MAX_HOPS`` hops
count: the client writes the left end of a chain, so a cap must never cut the right end.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional, Sequence

from ..policy import IPNetwork

MAX_HOPS = 32
MAX_HOP_CHARS = 100  # the longest spelling of an address ("[v6%zone]:port", quoted) is far shorter


def parse_ip(text: str) -> Optional[str]:
    """Normalise ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``"[::1]"`` to an address, else None."""
    if len(text) > MAX_HOP_CHARS:
        return None
    return _parse_ip(text)


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> Optional[str]:
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def rightmost_hops(chain: str) -> list[str]:
    """The last ``MAX_HOPS`` comma-separated elements of ``chain``, left to right, unparsed."""
    return chain.rsplit(",", MAX_HOPS)[-MAX_HOPS:]


def forwarded_for(forwarded: str) -> list[str]:
    """The ``for=`` values of a ``Forwarded`` header (RFC 7239), left to right, unparsed.

    An element without ``for=`` yields an empty hop, so the walk stops there rather than
    skipping over it to a hop further left.
    """
    hops = []
    for element in rightmost_hops(forwarded):
        found = ""
        for pair in element.split(";"):
            key, _, value = pair.partition("=")
            if key.strip().lower() == "for":
                found = value
        hops.append(found)
    return hops


def _trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    return _in_networks(address, tuple(networks))


@functools.lru_cache(maxsize=4096)
def _in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def resolve_client_address(
    peer: Optional[str],
    x_forwarded_for: Optional[str],
    forwarded: Optional[str],
    networks: Sequence[IPNetwork],
) -> Optional[str]:
    """The client's address: the peer, or the first untrusted hop when the peer is a trusted proxy."""
    client = parse_ip(peer) if peer else None
    if client is None or not networks or not _trusted(client, networks):
        return client
    if forwarded:
        hops = forwarded_for(forwarded)
    elif x_forwarded_for:
        hops = rightmost_hops(x_forwarded_for)
    else:
        return client
    for raw in reversed(hops):
        hop = parse_ip(raw)
        if hop is None:
            break
        client = hop
        if not _trusted(hop, networks):
            break
    return client


def mentioned_addresses(
    peer: Optional[str], x_forwarded_for: Optional[str], forwarded: Optional[str]
) -> frozenset[str]:
    """Every address the request carries (peer and all forwarded hops), for redaction."""
    if not x_forwarded_for and not forwarded:
        return frozenset((peer,)) if peer else frozenset()
    found = set()
    if peer:
        found.add(peer)
        parsed = parse_ip(peer)
        if parsed:
            found.add(parsed)
    hops: list[str] = []
    if x_forwarded_for:
        hops.extend(rightmost_hops(x_forwarded_for))
    if forwarded:
        hops.extend(forwarded_for(forwarded))
    for raw in hops:
        parsed = parse_ip(raw)
        if parsed:
            found.add(parsed)
    return frozenset(found)

"""Which ``Host`` headers the dashboard answers: its own names only, against DNS rebinding.

A web page the operator opens elsewhere can point its own domain at the dashboard's address
(DNS rebinding) and read the page as same-origin; the browser then sends that domain as
``Host``. So the server answers only names that are its own: loopback names, the address it
is bound to, the machine's host name and fully qualified name, and the names given with
``--allow-host``. IP literals are always answered, as Vite and webpack's dev servers do: a
browser sends one only when it was pointed at that address itself, which no rebinding page
can arrange. The port is not checked, so SSH tunnels and port forwards keep working.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

LOOPBACK_NAMES = ("localhost",)
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_WILDCARDS = ("", "0.0.0.0", "::")


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_host_name(name: str) -> str:
    """``name`` as the allow-list keeps it (lower case); ``ValueError`` naming the fix otherwise."""
    normal = _normal(name)
    if not (_is_ip(normal.strip("[]")) or _NAME.match(normal)):
        raise ValueError(
            f"--allow-host {name!r}: give a host name or address as the browser's address bar shows "
            "it, without scheme, port or path (e.g. --allow-host dashboard.internal)"
        )
    return normal.strip("[]")


def host_of(header: Optional[str]) -> Optional[str]:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``); None when malformed."""
    if not header:
        return None
    value = header.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name.lower() if _is_ip(name) else None
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return _normal(name) or None


@dataclass(frozen=True)
class HostAllowList:
    """The host names a dashboard answers (IP literals always).

    Usage: ``HostAllowList.for_server("0.0.0.0", ["dash.internal"]).allows("dash.internal:8765")``.
    """

    names: frozenset[str]

    @classmethod
    def for_server(cls, bound: str, extra: Iterable[str] = ()) -> HostAllowList:
        """Loopback names, the bound name, the machine's names and ``extra`` (checked)."""
        names = {*LOOPBACK_NAMES, *(check_host_name(name) for name in extra)}
        if _normal(bound) not in _WILDCARDS:
            names.add(_normal(bound).strip("[]"))
        for machine in _machine_names():
            names.add(_normal(machine))
        return cls(frozenset(name for name in names if name))

    def allows(self, header: Optional[str]) -> bool:
        name = host_of(header)
        if name is None:
            return False
        return _is_ip(name) or name in self.names


def _machine_names() -> tuple[str, ...]:
    try:
        return (socket.gethostname(), socket.getfqdn())
    except OSError:
        return ()

"""Browser, operating system and device type from a user agent, with ``ua-parser``.

Parsed in the converter thread, never on the request path, and remembered per agent string
(``MAX_REMEMBERED``): a new agent costs about 14 µs with ``ua-parser-rs`` (installed by the
``[devices]`` extra on Python 3.10+), 0.8 ms with ua-parser's pure-Python resolver; loading
its rules takes 0.1 s, once, at the first agent. Without ``ua-parser`` the browser and OS
are unknown (None) and the device type is known only for bots and monitors.

The device types (``DEVICE_TYPES``): ``desktop``, ``mobile`` (phones), ``tablet``,
``bot`` (bots and monitors, whatever they imitate), ``other`` (scripts, TVs, consoles,
anything with no known OS); None when the request had no user agent or the parser is not
installed. An iPad that asks for desktop sites (iPadOS' default Safari) says it is a Mac
and is a desktop here.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, NamedTuple, Optional

from .. import agents

DESKTOP = "desktop"
MOBILE = "mobile"
TABLET = "tablet"
BOT = "bot"
OTHER = "other"
DEVICE_TYPES: tuple[str, ...] = (DESKTOP, MOBILE, TABLET, BOT, OTHER)
MAX_REMEMBERED = 4096

_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD"}
)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "KaiOS", "HarmonyOS", "BlackBerry OS"})
_TABLET_DEVICES = ("iPad", "Tablet", "Kindle", "Nexus 7", "Nexus 9", "Nexus 10")


class Device(NamedTuple):
    """What the analytics store per event about the client (None: unknown).

    Args:
        client: ``agents.CLIENT_CLASSES``: browser, app, bot, monitor, script.
        browser: The browser's or app's family as ua-parser names it (``Chrome``,
            ``Mobile Safari``, ``Facebook``, ``Googlebot``, ``curl``).
        browser_version: Its major version (``131``).
        os: The operating system's family (``Windows``, ``iOS``, ``Android``).
        device_type: ``DEVICE_TYPES``.
    """

    client: Optional[str] = None
    browser: Optional[str] = None
    browser_version: Optional[str] = None
    os: Optional[str] = None
    device_type: Optional[str] = None


UNKNOWN = Device()


def warm_up() -> None:
    """Load ua-parser's rules now (0.1-0.2 s of CPU and 25-35 MB, once a process)."""
    _parser()


def describe(agent: Optional[str]) -> Device:
    """The client, browser, OS and device type of ``agent``; ``UNKNOWN`` without one."""
    if not agent:
        return UNKNOWN
    return _describe(agent)


@lru_cache(maxsize=MAX_REMEMBERED)
def _describe(agent: str) -> Device:
    client = agents.client_class(agent)
    parser = _parser()
    if parser is None:
        return Device(client, device_type=BOT if client in (agents.BOT, agents.MONITOR) else None)
    result = parser.parse(agent)
    browser = _family(result.user_agent)
    version = getattr(result.user_agent, "major", None) if browser else None
    os = _family(result.os)
    return Device(client, browser, version, os, _device_type(client, agent, os, result.device))


def _family(part: Any) -> Optional[str]:
    family = getattr(part, "family", None)
    return family if isinstance(family, str) and family and family != "Other" else None


def _device_type(client: Optional[str], agent: str, os: Optional[str], device: Any) -> str:
    if client in (agents.BOT, agents.MONITOR):
        return BOT
    if client == agents.SCRIPT:
        return OTHER
    family = getattr(device, "family", None) or ""
    if any(name in family for name in _TABLET_DEVICES) or "Tablet" in (getattr(device, "brand", None) or ""):
        return TABLET
    if os == "Android":
        # Android tablets' browsers leave out "Mobile"; in-app browsers and app clients
        # (okhttp, Dalvik) run on phones far more often.
        return MOBILE if "Mobile" in agent or client == agents.APP else TABLET
    if os in _MOBILE_OS or "Mobi" in agent:
        return MOBILE
    if os in _DESKTOP_OS:
        return DESKTOP
    if client == agents.APP and "okhttp/" in agent:
        return MOBILE  # every Android app's HTTP client, which names no OS
    return OTHER


_lock = threading.Lock()
_loaded = False
_loaded_parser: Any = None


def _parser() -> Any:
    """ua-parser's parser on its fastest installed resolver, or None without ua-parser."""
    global _loaded, _loaded_parser
    if _loaded:
        return _loaded_parser
    with _lock:
        if not _loaded:
            _loaded_parser = _load_parser()
            _loaded = True
    return _loaded_parser


def _load_parser() -> Any:
    try:
        from ua_parser import BasicResolver, Parser, load_builtins  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    matchers = load_builtins()
    try:
        from ua_parser.regex import Resolver  # type: ignore[import-not-found,unused-ignore]

        return Parser(Resolver(matchers))
    except ImportError:  # no ua-parser-rs: ua-parser's own (pure Python) resolver
        return Parser(BasicResolver(matchers))

"""Who sent a request, from its user agent: a person's browser or app, a bot, a monitor, a script.

Both paths use it: the request path tags the span of a bot (``user_tracking.bot``,
``user_agent.synthetic.type``), the analytics path decides from it what is a pageview and
what is counted as filtered. The answer is remembered per agent string (``MAX_REMEMBERED``),
so a site's few distinct agents cost a dict lookup each.

The classes (``CLIENT_CLASSES``):

* ``browser``: a person's web browser (anything Mozilla-compatible no rule below claims);
* ``app``: a person's app: in-app browsers (Facebook, Instagram, Telegram, ...), desktop
  apps (Slack, Discord, Teams, any Electron app) and the HTTP clients of mobile apps
  (okhttp, CFNetwork, Dart, Dalvik, Alamofire), and any other agent no rule recognises;
* ``bot``: a crawler, scraper, link previewer or AI fetcher;
* ``monitor``: an uptime or synthetic monitor, a load balancer's or Kubernetes' health check;
* ``script``: another non-browser client: curl, wget, HTTP libraries (python-requests,
  httpx, aiohttp, Go-http-client, axios, ...), Postman, browser automation (headless Chrome).

Bots, monitors and scripts come from the maintained ``crawler-user-agents`` list (its tags:
``monitoring`` is a monitor, ``http-library`` and ``browser-automation`` a script, the
rest a bot), plus the few rules of ``_OUR_RULES``; the people's apps of ``APP_PATTERNS``
are checked first and are never anything else, whatever the list says (it lists okhttp as
an HTTP library, and its ``Sonic`` pattern matches the Slack desktop app). Without the
``[devices]`` extra, ``_BUILT_IN`` stands in for the list. With ``ua-parser-rs`` installed
the patterns run in its Rust regex set (about 9 µs a new agent in all, not 170).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Callable, Optional

_logger = logging.getLogger(__name__)

BROWSER = "browser"
APP = "app"
BOT = "bot"
MONITOR = "monitor"
SCRIPT = "script"
CLIENT_CLASSES: tuple[str, ...] = (BROWSER, APP, BOT, MONITOR, SCRIPT)
# Not a person: no pageview while ``ignore_bots`` is on; counted as filtered instead.
NOT_PEOPLE = frozenset({BOT, MONITOR, SCRIPT})
MAX_REMEMBERED = 4096  # agents; at most 512 characters each (request/headers.py): ~3 MB

# People's apps, matched before any bot rule. Case-sensitive: ``discord/`` is the desktop app,
# ``Discordbot/`` its link previewer; ``Slack/4.`` the app, ``Slackbot`` the previewer.
APP_PATTERNS: tuple[str, ...] = (
    r"FBAN/|FBAV/|FB_IAB/",  # Facebook and Messenger in-app browsers
    r"Instagram \d",  # Instagram's in-app browser
    r"Telegram-(?:Android|iOS)/",  # Telegram's in-app browser
    r" Line/\d|Snapchat/?\d|musical_ly|BytedanceWebview|LinkedInApp|Pinterest for|GSA/\d",
    r"Electron/\d|Slack/\d|Slack_SSB/|discord/\d|Teams/\d",  # desktop apps
    r"okhttp/|CFNetwork/|^Dart/|^Dalvik/|Alamofire/",  # the HTTP clients of mobile apps
)

# What the list misses, and the generic markers of a bot (``Cubot`` is a phone maker).
_OUR_RULES: dict[str, tuple[str, ...]] = {
    MONITOR: (r"AlwaysOn", r"kube-probe/", r"ELB-HealthChecker/", r"GoogleHC/", r"[hH]ealth-?[cC]heck"),
    SCRIPT: (r"PostmanRuntime/", r"[iI]nsomnia/"),
    BOT: (r"(?:^|[^uU])[bB]ot\b", r"[cC]rawler", r"[sS]pider"),
}
# Without crawler-user-agents: a small rule of well-known names (case-insensitive here).
_BUILT_IN: dict[str, tuple[str, ...]] = {
    MONITOR: (
        r"(?i:monitor|uptime|pingdom|synthetics|checkly|statuscake|site24x7|newrelicpinger|"
        r"blackbox exporter)",
    ),
    SCRIPT: (
        r"(?i:^curl|^wget|python-requests|python-urllib|httpx|aiohttp|go-http-client|libwww|"
        r"apache-httpclient|^java/|axios|node-fetch|httpie|guzzle|scrapy|headless|phantomjs|"
        r"selenium|puppeteer|playwright)",
    ),
    BOT: (
        r"(?i:slurp|scrape|facebookexternalhit|embedly|quora link|whatsapp|inspectiontool|"
        r"lighthouse|yandex|baidu|semrush|ahrefs|mj12|petalbot|bytespider|gptbot|ccbot|"
        r"perplexity|archive\.org)",
    ),
}
# The list's tags that are not bots; an entry with any other tag is one.
_TAG_CLASSES = {"monitoring": MONITOR, "http-library": SCRIPT, "browser-automation": SCRIPT}
_ORDER = (MONITOR, SCRIPT, BOT)  # an agent several rules match takes the first of these


def client_class(agent: Optional[str]) -> Optional[str]:
    """The class of the client that sent ``agent`` (``CLIENT_CLASSES``); None without one."""
    if not agent:
        return None
    return _client_class(agent)


def is_person(agent: Optional[str]) -> bool:
    """False for a bot's, a monitor's or a script's agent: what ``ignore_bots`` keeps out."""
    return client_class(agent) not in NOT_PEOPLE


def synthetic_type(client: Optional[str]) -> Optional[str]:
    """``user_agent.synthetic.type`` of a client class: ``bot`` for a bot, ``test`` for a monitor.

    Contrib's ``detect_synthetic_user_agent`` (opentelemetry-util-http) calls an agent
    ``bot`` when it contains googlebot or bingbot and ``test`` when it contains alwayson: we
    agree on those three (all bots or monitors here) and name many more. Scripts get no type,
    as in contrib: a person may run curl, and it is neither a crawler nor a synthetic test.
    """
    if client == BOT:
        return "bot"
    if client == MONITOR:
        return "test"
    return None


def rules_source() -> str:
    """Where the bot rules come from: ``crawler-user-agents X.Y.Z`` or ``built-in``."""
    return _matcher().source


def warm_up() -> None:
    """Build the matcher now (20-30 ms, once a process), at start-up, not in the first request."""
    _matcher()


@lru_cache(maxsize=MAX_REMEMBERED)
def _client_class(agent: str) -> str:
    if _APPS.search(agent):
        return APP
    found = _matcher().match(agent)
    if found is not None:
        return found
    return BROWSER if agent.startswith(("Mozilla/", "Opera/")) else APP


_APPS = re.compile("|".join(APP_PATTERNS))


class _Matcher:
    """The bot, monitor and script patterns, by class: which class matches an agent first."""

    def __init__(self, rules: dict[str, list[str]], source: str) -> None:
        self.source = source
        self.match = _rust_matcher(rules) or _python_matcher(rules)


def _python_matcher(rules: dict[str, list[str]]) -> Callable[[str], Optional[str]]:
    """Per class, the patterns as alternations of 25 (one of all 1 500 is five times slower)."""
    chunks: list[tuple[str, re.Pattern[str]]] = []
    for client in _ORDER:
        patterns = rules.get(client, [])
        for start in range(0, len(patterns), 25):
            chunks.append((client, re.compile("|".join(f"(?:{p})" for p in patterns[start : start + 25]))))

    def match(agent: str) -> Optional[str]:
        for client, chunk in chunks:
            if chunk.search(agent):
                return client
        return None

    return match


def _rust_matcher(rules: dict[str, list[str]]) -> Optional[Callable[[str], Optional[str]]]:
    """The patterns in ua-parser-rs's regex set (first match in order), when it is installed."""
    try:
        import ua_parser_rs  # type: ignore[import-not-found,import-untyped,unused-ignore]

        extractor: Any = ua_parser_rs.UserAgentExtractor(
            (pattern, client, None, None, None, None)
            for client in _ORDER
            for pattern in rules.get(client, [])
        )
    except Exception:  # not installed, or a pattern its regex syntax refuses: Python's re
        return None

    def match(agent: str) -> Optional[str]:
        found = extractor.extract(agent)
        return None if found is None else str(found.family)

    return match


def _load_rules() -> _Matcher:
    rules: dict[str, list[str]] = {client: list(_OUR_RULES[client]) for client in _ORDER}
    try:
        from crawleruseragents import CRAWLER_USER_AGENTS_DATA  # type: ignore[import-untyped,unused-ignore]

        entries = _entries(CRAWLER_USER_AGENTS_DATA)
    except Exception as exc:  # not installed (ImportError), or a release whose data we cannot read
        if not isinstance(exc, ImportError):
            _logger.warning("crawler-user-agents unusable (%s): the built-in bot rule", type(exc).__name__)
        for client in _ORDER:
            rules[client].extend(_BUILT_IN[client])
        return _Matcher(rules, "built-in")
    for client, pattern in entries:
        rules[client].append(pattern)
    return _Matcher(rules, f"crawler-user-agents {_version('crawler-user-agents')}")


def _entries(data: Iterable[Any]) -> Sequence[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for entry in data:
        pattern = entry.get("pattern") if isinstance(entry, dict) else None
        if not isinstance(pattern, str):
            continue
        try:
            re.compile(f"(?:{pattern})")  # as the matcher joins it
        except re.error:
            continue
        tags = entry.get("tags") or ()
        client = next((_TAG_CLASSES[tag] for tag in tags if tag in _TAG_CLASSES), BOT)
        found.append((client, pattern))
    return found


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


_lock = threading.Lock()
_built: Optional[_Matcher] = None


def _matcher() -> _Matcher:
    global _built
    built = _built
    if built is None:
        with _lock:
            built = _built
            if built is None:
                built = _built = _load_rules()
    return built

"""Configuration: one frozen `Config`, built from code, then environment, then defaults.

`configure()` may be called before or after instrumentation; the next request reads the new
`Config` through a single module-level reference, so the hot path takes no lock. All
``OTEL_PYTHON_USER_TRACKING_*`` variables are parsed here and nowhere else.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, MutableMapping, Optional, Sequence

from .analytics.events import AnalyticsEvent
from .policy import FIELD_MODES, HASH_KEY_ENV, IP_MODES, TagPolicy

UserResolver = Callable[[MutableMapping[str, Any]], Any]
PageviewFilter = Callable[[AnalyticsEvent], bool]

ENV_PREFIX = "OTEL_PYTHON_USER_TRACKING_"
ENV_SINKS = ENV_PREFIX + "SINKS"
ENV_EXCLUDED_URLS = ENV_PREFIX + "EXCLUDED_URLS"
OTEL_EXCLUDED_URLS = "OTEL_PYTHON_EXCLUDED_URLS"
DEFAULT_SINKS = "sqlite:///./otel-user-tracking.db"

DEFAULT_SCRUB_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "key",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "session_id",
        "sid",
        "email",
        "code",
        "signature",
        "sig",
        "credential",
        "credentials",
        "otp",
        "ssn",
    }
)
DEFAULT_PAGEVIEW_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Config:
    """Everything the middleware and the analytics read per request, validated once.

    Args:
        tag_policy: What user fields and client address may be exported.
        user_resolver: ``resolver(scope)`` returning a user object or mapping, or None.
        excluded_urls: Regexes searched in the full URL; matching requests are not tracked.
        child_spans: Also put ``user.id`` on spans started during the request.
        internal_spans: Keep the ASGI middleware's ``http send``/``http receive`` spans.
        min_status_to_capture: Handled exceptions whose response has at least this status
            are recorded as ``exception`` events.
        session_header: Request header that carries the analytics session id.
        scrub_query_keys: Query parameters whose values are replaced by ``REDACTED``
            (matched case-insensitively, also as a substring: ``reset_token`` matches ``token``).
        honor_privacy_signals: ``Sec-GPC: 1`` / ``DNT: 1`` requests carry no user fields and
            no visitor id into analytics.
        ignore_bots: Known bots and crawlers produce no pageviews.
        pageview_methods: Request methods that produce pageviews.
        pageview_filter: Optional ``filter(event) -> bool``; False drops the pageview.
        site: Part of the visitor-id hash, so one visitor has different ids on two sites.
        analytics_sampler: Under the CLI, wrap the sampler so analytics sees every request.
    """

    tag_policy: TagPolicy = field(default_factory=TagPolicy)
    user_resolver: Optional[UserResolver] = None
    excluded_urls: tuple[str, ...] = ()
    child_spans: bool = True
    internal_spans: bool = False
    min_status_to_capture: int = 500
    session_header: str = "x-session-id"
    scrub_query_keys: frozenset[str] = DEFAULT_SCRUB_QUERY_KEYS
    honor_privacy_signals: bool = True
    ignore_bots: bool = True
    pageview_methods: frozenset[str] = DEFAULT_PAGEVIEW_METHODS
    pageview_filter: Optional[PageviewFilter] = None
    site: str = ""
    analytics_sampler: bool = True
    _excluded: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tag_policy, TagPolicy):
            raise ValueError("tag_policy must be a TagPolicy, e.g. TagPolicy(email='mask')")
        if self.user_resolver is not None and not callable(self.user_resolver):
            raise ValueError("user_resolver must be a callable taking the ASGI scope")
        if not 100 <= int(self.min_status_to_capture) <= 599:
            raise ValueError("min_status_to_capture must be an HTTP status from 100 to 599")
        patterns = _as_tuple(self.excluded_urls)
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"excluded_urls: {pattern!r} is not a regex ({exc})") from None
        object.__setattr__(self, "excluded_urls", patterns)
        object.__setattr__(self, "_excluded", tuple(compiled))
        object.__setattr__(self, "session_header", self.session_header.strip().lower())
        object.__setattr__(self, "scrub_query_keys", frozenset(k.lower() for k in self.scrub_query_keys))
        object.__setattr__(self, "pageview_methods", frozenset(m.upper() for m in self.pageview_methods))

    def is_excluded(self, url: str) -> bool:
        """True when a configured exclusion regex is found in ``url``."""
        return any(pattern.search(url) for pattern in self._excluded)


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item and item.strip())


def _env_choice(env: Mapping[str, str], name: str, choices: Sequence[str]) -> Optional[str]:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value not in choices:
        raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not allowed; use one of: {', '.join(choices)}")
    return value


def _env_bool(env: Mapping[str, str], name: str) -> Optional[bool]:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not allowed; use true or false")


def pipeline_from_env(env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Analytics delivery settings from ``OTEL_PYTHON_USER_TRACKING_FLUSH_AT`` and friends.

    Returns keyword arguments for ``AnalyticsSpanProcessor``; unset variables are left out so
    its defaults apply.
    """
    source = os.environ if env is None else env
    numbers: dict[str, tuple[str, type]] = {
        "flush_at": ("FLUSH_AT", int),
        "flush_interval": ("FLUSH_INTERVAL", float),
        "max_queue_size": ("MAX_QUEUE_SIZE", int),
        "max_retries": ("MAX_RETRIES", int),
        "max_backoff": ("MAX_BACKOFF", float),
    }
    values: dict[str, Any] = {}
    for option, (name, kind) in numbers.items():
        raw = source.get(ENV_PREFIX + name)
        if raw is None or not raw.strip():
            continue
        try:
            values[option] = kind(raw.strip())
        except ValueError:
            unit = "a whole number" if kind is int else "a number of seconds"
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not allowed; use {unit}") from None
    return values


def policy_from_env(env: Mapping[str, str]) -> TagPolicy:
    """The TagPolicy the ``OTEL_PYTHON_USER_TRACKING_*`` variables describe."""
    params: dict[str, Any] = {}
    for attr in ("id", "name", "email"):
        mode = _env_choice(env, attr.upper(), FIELD_MODES)
        if mode is not None:
            params[attr] = mode
    ip = _env_choice(env, "IP", IP_MODES)
    if ip is not None:
        params["ip"] = ip
    roles = _env_bool(env, "ROLES")
    if roles is not None:
        params["roles"] = roles
    key = env.get(HASH_KEY_ENV)
    if key:
        params["hash_key"] = key
    proxies = env.get(ENV_PREFIX + "TRUSTED_PROXIES")
    if proxies:
        params["trusted_proxies"] = _as_tuple(proxies)
    try:
        return TagPolicy(**params)
    except ValueError as exc:
        raise ValueError(f"{exc} (from the {ENV_PREFIX}* environment variables)") from None


def config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The Config fields the environment sets (only those it sets)."""
    values: dict[str, Any] = {"tag_policy": policy_from_env(env)}
    excluded = env.get(ENV_EXCLUDED_URLS) or env.get(OTEL_EXCLUDED_URLS)
    if excluded:
        values["excluded_urls"] = _as_tuple(excluded)
    for name, attr in (
        ("CHILD_SPANS", "child_spans"),
        ("INTERNAL_SPANS", "internal_spans"),
        ("HONOR_PRIVACY_SIGNALS", "honor_privacy_signals"),
        ("IGNORE_BOTS", "ignore_bots"),
        ("ANALYTICS_SAMPLER", "analytics_sampler"),
    ):
        flag = _env_bool(env, name)
        if flag is not None:
            values[attr] = flag
    status = env.get(ENV_PREFIX + "MIN_STATUS_TO_CAPTURE")
    if status:
        if not status.strip().isdigit():
            raise ValueError(
                f"{ENV_PREFIX}MIN_STATUS_TO_CAPTURE={status!r} is not allowed; use a status such as 500"
            )
        values["min_status_to_capture"] = int(status)
    for name, attr in (("SESSION_HEADER", "session_header"), ("SITE", "site")):
        text = env.get(ENV_PREFIX + name)
        if text:
            values[attr] = text.strip()
    scrub = env.get(ENV_PREFIX + "SCRUB_QUERY_KEYS")
    if scrub:
        values["scrub_query_keys"] = frozenset(_as_tuple(scrub))
    return values


class _Settings:
    """Holds the explicit ``configure()`` values and the Config derived from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._explicit: dict[str, Any] = {}
        self.current: Optional[Config] = None
        self.generation = 0

    def build(self, env: Optional[Mapping[str, str]] = None) -> Config:
        values = config_from_env(os.environ if env is None else env)
        values.update(self._explicit)
        return Config(**values)

    def get(self) -> Config:
        current = self.current
        if current is None:
            with self._lock:
                if self.current is None:
                    self.current = self.build()
                current = self.current
        return current

    def configure(self, **options: Any) -> Config:
        known = {f.name for f in fields(Config) if f.init}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"configure() got unknown option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}"
            )
        with self._lock:
            explicit = {**self._explicit, **options}
            base = self.build()
            config = replace(base, **{k: v for k, v in explicit.items()})
            self._explicit = explicit
            self.current = config
            self.generation += 1
        return config

    def reset(self) -> None:
        with self._lock:
            self._explicit = {}
            self.current = None
            self.generation += 1


_settings = _Settings()


def configure(**options: Any) -> Config:
    """Set options in code; they win over environment variables and defaults.

    Usage: ``configure(tag_policy=TagPolicy(email="hash", hash_key=KEY), user_resolver=fn)``.
    Takes effect for the next request, whether called before or after instrumentation.
    Raises ``ValueError`` (with the fix in the message) for an invalid option.
    """
    return _settings.configure(**options)


def get_config() -> Config:
    """The Config in force: ``configure()`` values over environment over defaults."""
    return _settings.get()


def reset_config() -> None:
    """Forget ``configure()`` values and re-read the environment (for tests)."""
    _settings.reset()


def sinks_setting(env: Optional[Mapping[str, str]] = None) -> str:
    """The raw ``OTEL_PYTHON_USER_TRACKING_SINKS`` value, or the SQLite default."""
    source = os.environ if env is None else env
    return source.get(ENV_SINKS, "").strip() or DEFAULT_SINKS

"""Configuration: one frozen `Config`, built from code, then environment, then defaults.

`configure()` may be called before or after instrumentation; the next request reads the new
`Config` through a single module-level reference, so the hot path takes no lock. The
environment's part is parsed in ``env.py``.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, MutableMapping, Optional, Union

from .analytics.events import AnalyticsEvent
from .env import as_tuple, config_from_env, dependency_name_error
from .policy import TagPolicy, check_hash_key
from .salts.secret import VISITOR_SECRET_ENV

UserResolver = Callable[[MutableMapping[str, Any]], Any]
# FastAPI's auth dependency, as the function itself or its "module:attribute" name.
UserDependency = Union[Callable[..., Any], str]
PageviewFilter = Callable[[AnalyticsEvent], bool]


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
        "passcode",
        "passphrase",
        "jwt",
        "cookie",
    }
)
DEFAULT_PAGEVIEW_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Config:
    """Everything the middleware and the analytics read per request, validated once.

    Args:
        tag_policy: What user fields and client address may be exported.
        user_resolver: ``resolver(scope)`` returning a user object or mapping, or None.
        user_dependency: FastAPI's auth dependency whose returned value is the request's user
            (the function, or its ``"module:attribute"`` name such as
            ``"app.deps:get_current_user"``). None: any dependency with a conventional name
            (``get_current_user``, ``current_user``, ``get_current_active_user``, ...; see
            ``frameworks/fastapi.py``).
        excluded_urls: Regexes searched in the full URL; matching requests are not tracked.
        child_spans: Also put ``user.id`` on spans started during the request.
        internal_spans: Keep the ASGI middleware's ``http send``/``http receive`` spans.
        min_status_to_capture: Handled exceptions whose response has at least this status
            are recorded as ``exception`` events.
        session_header: Request header that carries the analytics session id.
        scrub_query_keys: Words naming parameters whose values are replaced by ``REDACTED``
            in query strings and URL fragments (``&`` or ``;`` separated) and in captured
            headers. A key matches case-insensitively on its parts, split at separators,
            camelCase and digits (``passwordConfirm``, ``apiKeyId``, ``password1``,
            ``reset_token``); words of five or more letters also match inside a part
            (``resettoken``).
        honor_privacy_signals: ``Sec-GPC: 1`` / ``DNT: 1`` requests carry no user fields and
            no visitor id into analytics.
        ignore_bots: Known bots and crawlers produce no pageviews.
        pageview_methods: Request methods that produce pageviews.
        pageview_filter: Optional ``filter(event) -> bool``; False drops the pageview.
        site: Part of the visitor-id hash, so one visitor has different ids on two sites.
        visitor_secret: Derive each day's visitor-id salt from this secret (at least 16
            bytes) instead of keeping it in the store: for processes that share no store.
            Whoever holds it can recompute past days' salts (see ``salts/secret.py``).
        analytics_sampler: Under the CLI, wrap the sampler so analytics sees every request.
        registered_names: Also write the registered semantic-convention names beside ours:
            ``session.id``, ``enduser.pseudo.id`` (the visitor id), ``user_agent.synthetic.type``
            (``bot``) and ``enduser.id`` (``user.id`` as the policy exports it).
        server_request_hook: ``hook(span, scope)``, called when the server span starts, as
            every contrib HTTP server instrumentation calls it.
        client_request_hook: ``hook(span, scope, message)`` for each message the app receives.
        client_response_hook: ``hook(span, scope, message)`` for each message the app sends.
            Without ``internal_spans`` the two get the server span (there is no per-message
            span); a hook that raises is recorded on the span and never fails the request.
        request_hook: The WSGI side's request hook, with the signature of the contrib
            instrumentation of the app's framework: ``hook(span, environ)`` for WSGI and
            Flask, ``hook(span, request)`` for Django; called when the request starts.
        response_hook: ``hook(span, environ, status, response_headers)`` for WSGI,
            ``hook(span, status, response_headers)`` for Flask, ``hook(span, request,
            response)`` for Django; called when the response starts. A hook that raises is
            logged once and never fails the request.
    """

    tag_policy: TagPolicy = field(default_factory=TagPolicy)
    user_resolver: Optional[UserResolver] = None
    user_dependency: Optional[UserDependency] = None
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
    visitor_secret: Union[str, bytes, None] = field(default=None, repr=False)
    analytics_sampler: bool = True
    registered_names: bool = False
    server_request_hook: Optional[Callable[..., Any]] = None
    client_request_hook: Optional[Callable[..., Any]] = None
    client_response_hook: Optional[Callable[..., Any]] = None
    request_hook: Optional[Callable[..., Any]] = None
    response_hook: Optional[Callable[..., Any]] = None
    _excluded: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tag_policy, TagPolicy):
            raise ValueError("tag_policy must be a TagPolicy, e.g. TagPolicy(email='mask')")
        if self.user_resolver is not None and not callable(self.user_resolver):
            raise ValueError("user_resolver must be a callable taking the ASGI scope")
        for hook in ("server_request_hook", "client_request_hook", "client_response_hook"):
            if getattr(self, hook) is not None and not callable(getattr(self, hook)):
                raise ValueError(f"{hook} must be a callable taking the span, the scope (and the message)")
        for hook in ("request_hook", "response_hook"):
            if getattr(self, hook) is not None and not callable(getattr(self, hook)):
                raise ValueError(f"{hook} must be a callable taking the span and the request (see the docs)")
        dependency = self.user_dependency
        if isinstance(dependency, str):
            problem = dependency_name_error(dependency)
            if problem:
                raise ValueError(f"user_dependency={dependency!r} {problem}")
        elif dependency is not None and not callable(dependency):
            raise ValueError(
                "user_dependency must be FastAPI's auth dependency (the function) or its "
                "'module:attribute' name, e.g. 'app.deps:get_current_user'"
            )
        if not 100 <= int(self.min_status_to_capture) <= 599:
            raise ValueError("min_status_to_capture must be an HTTP status from 100 to 599")
        patterns = as_tuple(self.excluded_urls)
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"excluded_urls: {pattern!r} is not a regex ({exc})") from None
        object.__setattr__(self, "excluded_urls", patterns)
        object.__setattr__(self, "_excluded", tuple(compiled))
        if self.visitor_secret is not None:
            secret = self.visitor_secret
            secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
            check_hash_key(secret, "visitor_secret", VISITOR_SECRET_ENV)
            object.__setattr__(self, "visitor_secret", secret.strip())
        object.__setattr__(self, "session_header", self.session_header.strip().lower())
        object.__setattr__(self, "scrub_query_keys", frozenset(k.lower() for k in self.scrub_query_keys))
        object.__setattr__(self, "pageview_methods", frozenset(m.upper() for m in self.pageview_methods))

    def is_excluded(self, url: str) -> bool:
        """True when a configured exclusion regex is found in ``url``."""
        return any(pattern.search(url) for pattern in self._excluded)


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


def config_generation() -> int:
    """A number that changes whenever ``configure()`` or ``reset_config()`` changes the Config in
    force: a front door re-derives what its requests need only when it moved."""
    return _settings.generation


def reset_config() -> None:
    """Forget ``configure()`` values and re-read the environment (for tests)."""
    _settings.reset()

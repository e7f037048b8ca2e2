"""Every ``OTEL_PYTHON_USER_TRACKING_*`` variable, parsed here and nowhere else (but for the
hash key ``TagPolicy.strict()`` falls back to, read in ``policy.py``, which this module builds on).

Each parser raises ``ValueError`` naming the exact variable, its value and what is allowed,
so a typo stops the start with a fix instead of running with a default nobody chose.
Explicit code beats the environment, which beats defaults: these only return what the
environment sets. Each variable has its entry in ``variables.py`` (the configuration
reference is generated from it; a test fails for a variable read here without one).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, Optional

from .analytics.settings import DeliverySettings, describe_range
from .policy import (
    FIELD_MODES,
    HASH_KEY_ENV,
    IP_MODES,
    USER_FIELDS,
    TagPolicy,
    extra_name_error,
    parse_networks,
)

ENV_PREFIX = "OTEL_PYTHON_USER_TRACKING_"
ENV_SINKS = ENV_PREFIX + "SINKS"
ENV_EXCLUDED_URLS = ENV_PREFIX + "EXCLUDED_URLS"
ENV_USER_DEPENDENCY = ENV_PREFIX + "USER_DEPENDENCY"
ENV_EXTRA = ENV_PREFIX + "EXTRA"
OTEL_EXCLUDED_URLS = "OTEL_PYTHON_EXCLUDED_URLS"
# The variables contrib's ASGI-based instrumentations read (Django's under ASGI too); a URL any
# of them excludes gets no span.
OTEL_FRAMEWORK_EXCLUDED_URLS = tuple(
    f"OTEL_PYTHON_{name}_EXCLUDED_URLS" for name in ("ASGI", "STARLETTE", "FASTAPI", "DJANGO")
)
# The variables contrib's WSGI-based instrumentations read (its WSGI middleware reads none).
OTEL_WSGI_FRAMEWORK_EXCLUDED_URLS = tuple(f"OTEL_PYTHON_{name}_EXCLUDED_URLS" for name in ("FLASK", "DJANGO"))
WEBHOOK_AUTHORIZATION_ENV = ENV_PREFIX + "WEBHOOK_AUTHORIZATION"
RAISE_INTERNAL_ERRORS_ENV = ENV_PREFIX + "RAISE_INTERNAL_ERRORS"
DEFAULT_SINKS = "sqlite:///./otel-user-tracking.db"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    """Items of a comma-separated string or a sequence, stripped, empty ones left out."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item and item.strip())


def _environ(env: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if env is None else env


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


def otel_excluded_urls(
    env: Optional[Mapping[str, str]] = None, variables: Sequence[str] = OTEL_FRAMEWORK_EXCLUDED_URLS
) -> tuple[str, ...]:
    """The URL regexes OpenTelemetry's own variables exclude, whatever our configuration says.

    ``OTEL_PYTHON_EXCLUDED_URLS`` and the per-framework ``variables`` (by default the ASGI
    door's, ``OTEL_PYTHON_{ASGI,STARLETTE,FASTAPI,DJANGO}_EXCLUDED_URLS``; comma-separated,
    searched in the URL as contrib searches them): a request another instrumentation would not
    trace gets no span, no user and no analytics from us either.
    """
    source = _environ(env)
    patterns: list[str] = []
    for name in (OTEL_EXCLUDED_URLS, *variables):
        patterns += as_tuple(source.get(name) or "")
    return tuple(dict.fromkeys(patterns))


def delivery_from_env(env: Optional[Mapping[str, str]] = None) -> DeliverySettings:
    """Analytics delivery settings from ``OTEL_PYTHON_USER_TRACKING_FLUSH_AT`` and friends.

    Every option of ``DeliverySettings`` has a variable named after it in upper case
    (``FLUSH_INTERVAL``, ``MAX_QUEUE_SIZE``, ``SHUTDOWN_TIMEOUT``...); unset ones keep
    their defaults.
    """
    source = _environ(env)
    values: dict[str, Any] = {}
    for item in fields(DeliverySettings):
        name = ENV_PREFIX + item.name.upper()
        raw = source.get(name)
        if raw is None or not raw.strip():
            continue
        whole = item.type in (int, "int")
        try:
            values[item.name] = int(raw.strip()) if whole else float(raw.strip())
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise ValueError(
                f"{name}={raw!r} is not allowed; use {kind} from {describe_range(item.name)}"
            ) from None
        try:
            DeliverySettings(**{item.name: values[item.name]})
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not allowed; use {describe_range(item.name)}") from None
    return DeliverySettings(**values)


def policy_from_env(env: Mapping[str, str]) -> TagPolicy:
    """The TagPolicy the ``OTEL_PYTHON_USER_TRACKING_*`` variables describe."""
    params: dict[str, Any] = {}
    for attr in USER_FIELDS:
        mode = _env_choice(env, attr.upper(), FIELD_MODES)
        if mode is not None:
            params[attr] = mode
    ip = _env_choice(env, "IP", IP_MODES)
    if ip is not None:
        params["ip"] = ip
    roles = _env_bool(env, "ROLES")
    if roles is not None:
        params["roles"] = roles
    extra = extra_from_env(env)
    if extra:
        params["extra"] = extra
    extra_default = _env_choice(env, "EXTRA_DEFAULT", FIELD_MODES)
    if extra_default is not None:
        params["extra_default"] = extra_default
    key = env.get(HASH_KEY_ENV)
    if key:
        params["hash_key"] = key
    proxies = env.get(ENV_PREFIX + "TRUSTED_PROXIES")
    if proxies:
        params["trusted_proxies"] = as_tuple(proxies)
        parse_networks(params["trusted_proxies"], source=f"{ENV_PREFIX}TRUSTED_PROXIES={proxies!r}")
    try:
        return TagPolicy(**params)
    except ValueError as exc:
        if "hash_key" in params:  # a weak key: the message names its variable
            raise
        hashed = [f"{ENV_PREFIX}{attr.upper()}=hash" for attr in USER_FIELDS if params.get(attr) == "hash"]
        if any(mode == "hash" for mode in params.get("extra", {}).values()):
            hashed.append(f"{ENV_EXTRA}={env.get(ENV_EXTRA)!r}")
        if params.get("extra_default") == "hash":
            hashed.append(f"{ENV_PREFIX}EXTRA_DEFAULT=hash")
        raise ValueError(f"{exc} (set by {', '.join(hashed) or 'the environment'})") from None


def extra_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_PYTHON_USER_TRACKING_EXTRA``: extra user fields' modes, ``plan=keep,org_id=hash``."""
    raw = env.get(ENV_EXTRA)
    modes: dict[str, str] = {}
    for item in as_tuple(raw or ""):
        name, equals, mode = (part.strip() for part in item.partition("="))
        problem = extra_name_error(name) if equals else "has no mode"
        if problem is None and mode.lower() not in FIELD_MODES:
            problem = f"has mode {mode!r}; use one of {', '.join(FIELD_MODES)}"
        if problem:
            raise ValueError(
                f"{ENV_EXTRA}={raw!r}: {item!r} {problem}; use name=mode pairs, e.g. plan=keep,org_id=hash"
            )
        modes[name] = mode.lower()
    return modes


_DEPENDENCY_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def dependency_name_error(name: str) -> Optional[str]:
    """What is wrong with a ``module:attribute`` name, or None when it is well formed."""
    if _DEPENDENCY_NAME.fullmatch(name.strip()):
        return None
    return "is not a 'module:attribute' name; use e.g. app.deps:get_current_user"


def _module_exists(name: str) -> bool:
    """Whether module ``name`` can be imported, found without running any of the app's code.

    Looked for in ``sys.path`` and the working directory (where uvicorn, gunicorn and the
    framework CLIs import the app from; under ``opentelemetry-instrument`` it is not on
    ``sys.path`` yet). Only the top-level name goes through the import system's finders
    (editable installs), its submodules through their package's folders: importing the app
    this early would run it before the other instrumentations are in place.
    """
    if name in sys.modules:
        return True
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top) or importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        for depth in range(len(rest)):
            if spec is None or spec.submodule_search_locations is None:
                return False
            spec = importlib.machinery.PathFinder.find_spec(
                ".".join([top, *rest[: depth + 1]]), list(spec.submodule_search_locations)
            )
    except (ImportError, ValueError):
        return False
    return spec is not None


def user_dependency_from_env(env: Mapping[str, str]) -> Optional[str]:
    """``OTEL_PYTHON_USER_TRACKING_USER_DEPENDENCY`` (``app.deps:get_current_user``), checked:
    a malformed name or a module that cannot be found stops the start."""
    raw = env.get(ENV_USER_DEPENDENCY)
    if raw is None or not raw.strip():
        return None
    name = raw.strip()
    problem = dependency_name_error(name)
    if problem:
        raise ValueError(f"{ENV_USER_DEPENDENCY}={raw!r} {problem}")
    module = name.partition(":")[0]
    if not _module_exists(module):
        raise ValueError(
            f"{ENV_USER_DEPENDENCY}={raw!r}: module {module!r} cannot be imported (looked in sys.path "
            "and the working directory); name the module:function of the app's auth dependency, "
            "e.g. app.deps:get_current_user"
        )
    return name


def config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The Config fields the environment sets (only those it sets)."""
    values: dict[str, Any] = {"tag_policy": policy_from_env(env)}
    excluded = env.get(ENV_EXCLUDED_URLS) or env.get(OTEL_EXCLUDED_URLS)
    if excluded:
        values["excluded_urls"] = as_tuple(excluded)
    for name, attr in (
        ("CHILD_SPANS", "child_spans"),
        ("INTERNAL_SPANS", "internal_spans"),
        ("HONOR_PRIVACY_SIGNALS", "honor_privacy_signals"),
        ("IGNORE_BOTS", "ignore_bots"),
        ("ANALYTICS_SAMPLER", "analytics_sampler"),
        ("REGISTERED_NAMES", "registered_names"),
    ):
        flag = _env_bool(env, name)
        if flag is not None:
            values[attr] = flag
    status = env.get(ENV_PREFIX + "MIN_STATUS_TO_CAPTURE")
    if status:
        if not status.strip().isdecimal():
            raise ValueError(
                f"{ENV_PREFIX}MIN_STATUS_TO_CAPTURE={status!r} is not allowed; use a status such as 500"
            )
        values["min_status_to_capture"] = int(status)
    secret = env.get(ENV_PREFIX + "VISITOR_SECRET")
    if secret:
        values["visitor_secret"] = secret
    for name, attr in (("SESSION_HEADER", "session_header"), ("SITE", "site")):
        text = env.get(ENV_PREFIX + name)
        if text:
            values[attr] = text.strip()
    dependency = user_dependency_from_env(env)
    if dependency:
        values["user_dependency"] = dependency
    scrub = env.get(ENV_PREFIX + "SCRUB_QUERY_KEYS")
    if scrub:
        values["scrub_query_keys"] = frozenset(as_tuple(scrub))
    return values


def sinks_setting(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The raw ``OTEL_PYTHON_USER_TRACKING_SINKS`` value; None when unset: the implicit default
    store (``DEFAULT_SINKS`` where it can be written, see ``store.default.default_store``)."""
    return _environ(env).get(ENV_SINKS, "").strip() or None


def webhook_authorization(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The ``Authorization`` header value for webhook sinks built from URLs."""
    return _environ(env).get(WEBHOOK_AUTHORIZATION_ENV) or None


def raise_internal_errors(env: Optional[Mapping[str, str]] = None) -> bool:
    """True when internal errors re-raise instead of being swallowed (our own test suite)."""
    return _environ(env).get(RAISE_INTERNAL_ERRORS_ENV) == "1"


def store_settings(env: Optional[Mapping[str, str]] = None) -> tuple[float, float]:
    """(retention in days, size cap in MB) of the embedded store; 0 turns either off.

    ``OTEL_PYTHON_USER_TRACKING_RETENTION``: ``90d`` (the default), ``12w``, ``36h`` or ``0``;
    ``OTEL_PYTHON_USER_TRACKING_MAX_STORE_MB``: a number of megabytes, default 0 (no cap).
    """
    source = _environ(env)
    retention_name, cap_name = ENV_PREFIX + "RETENTION", ENV_PREFIX + "MAX_STORE_MB"
    raw = (source.get(retention_name) or "90d").strip().lower()
    units = {"h": 1 / 24, "d": 1.0, "w": 7.0}
    try:
        days = float(raw) if raw[-1:].isdigit() else float(raw[:-1]) * units[raw[-1]]
        if not 0 <= days <= 36_500 or days != days:
            raise ValueError
    except (KeyError, ValueError):
        raise ValueError(
            f"{retention_name}={source.get(retention_name)!r} is not allowed; use a duration such as "
            "90d, 12w or 36h, or 0 to keep everything"
        ) from None
    raw_cap = (source.get(cap_name) or "0").strip()
    try:
        cap = float(raw_cap)
        if not 0 <= cap <= 10_000_000 or cap != cap:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{cap_name}={raw_cap!r} is not allowed; use a number of megabytes, or 0 for no cap"
        ) from None
    return days, cap


def outbox_settings(env: Optional[Mapping[str, str]] = None) -> tuple[Optional[str], int]:
    """(outbox path or None, max events per sink) from ``OTEL_PYTHON_USER_TRACKING_OUTBOX``
    (``sqlite:///relative.db`` or ``sqlite:////abs.db``) and ``..._MAX_OUTBOX_SIZE`` (1 000 000)."""
    source = _environ(env)
    name, size_name = ENV_PREFIX + "OUTBOX", ENV_PREFIX + "MAX_OUTBOX_SIZE"
    raw = (source.get(name) or "").strip()
    path: Optional[str] = None
    if raw and raw.lower() not in ("none", "off", "false", "0"):
        if not raw.startswith("sqlite:///") or len(raw) == len("sqlite:///"):
            raise ValueError(f"{name}={raw!r} is not allowed; use sqlite:///path/to/outbox.db")
        path = os.path.expanduser(raw[len("sqlite:///") :])
    raw_size = (source.get(size_name) or "1000000").strip()
    if not raw_size.isdecimal() or not 1 <= int(raw_size) <= 1_000_000_000:
        raise ValueError(f"{size_name}={raw_size!r} is not allowed; use a whole number of events, at least 1")
    return path, int(raw_size)

"""Every ``OTEL_PYTHON_USER_TRACKING_*`` environment variable: one entry each, in one table.

The configuration reference (``docs/configuration.md``) is generated from ``VARIABLES``, and
``tests/test_variables.py`` fails when the package reads a variable that has no entry here, or
an entry names a variable nothing reads. Adding a variable: parse it in ``env.py`` (its error
message names the variable and the fix) and add its ``Variable`` here, in the group it belongs
to.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "OTEL_PYTHON_USER_TRACKING_"


@dataclass(frozen=True)
class Variable:
    """One environment variable, as the configuration reference shows it.

    Args:
        name: The whole name, ``OTEL_PYTHON_USER_TRACKING_...``.
        type: What it takes, as a reader would write it (``keep|hash|mask|drop``, ``seconds``).
        default: What applies while it is unset.
        meaning: What it does, one or two sentences.
        option: The equivalent in code (``configure(...)``/``TagPolicy``/processor argument), if any.
        group: The reference's section it is listed under.
    """

    name: str
    type: str
    default: str
    meaning: str
    option: str = ""
    group: str = "Requests and spans"


def _policy(suffix: str, type_: str, default: str, meaning: str, option: str) -> Variable:
    return Variable(PREFIX + suffix, type_, default, meaning, option, group="Tag policy")


def _delivery(suffix: str, type_: str, default: str, meaning: str, option: str) -> Variable:
    return Variable(PREFIX + suffix, type_, default, meaning, option, group="Analytics delivery")


def _store(suffix: str, type_: str, default: str, meaning: str) -> Variable:
    return Variable(PREFIX + suffix, type_, default, meaning, group="The embedded store")


_FIELD = "`keep`, `hash`, `mask` or `drop`"

VARIABLES: tuple[Variable, ...] = (
    _policy("ID", _FIELD, "`keep`", "How `user.id` is exported.", "`TagPolicy.id`"),
    _policy("NAME", _FIELD, "`keep`", "How `user.name` is exported.", "`TagPolicy.name`"),
    _policy("EMAIL", _FIELD, "`keep`", "How `user.email` is exported.", "`TagPolicy.email`"),
    _policy("ROLES", "`true` or `false`", "`true`", "Whether `user.roles` is exported.", "`TagPolicy.roles`"),
    _policy(
        "IP",
        "`keep`, `anonymize` or `drop`",
        "`drop`",
        "How the client address is exported (`anonymize`: IPv4 /24, IPv6 /48).",
        "`TagPolicy.ip`",
    ),
    _policy(
        "HASH_KEY",
        "a secret of at least 16 bytes",
        "none",
        "The HMAC key of every `hash` mode; keep it stable (a new key gives everyone new hashes). "
        "Make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.",
        "`TagPolicy.hash_key`",
    ),
    _policy(
        "TRUSTED_PROXIES",
        "comma-separated CIDRs",
        "none",
        "Peers whose `X-Forwarded-For`/`Forwarded` headers are believed.",
        "`TagPolicy.trusted_proxies`",
    ),
    _policy(
        "EXTRA",
        "comma-separated `name=mode` pairs",
        "none",
        "Extra user fields (`set_user(plan=...)`) exported as `user.<name>` and in the events, each "
        "in its mode (`plan=keep,org_id=hash`); names are 1-64 characters of `a-z`, `0-9`, `_`, `.`.",
        "`TagPolicy.extra`",
    ),
    _policy(
        "EXTRA_DEFAULT",
        _FIELD,
        "`drop`",
        "The mode of an extra user field `EXTRA` does not name.",
        "`TagPolicy.extra_default`",
    ),
    Variable(
        PREFIX + "USER_DEPENDENCY",
        "`module:function`",
        "the conventional names",
        "FastAPI's auth dependency whose value is the request's user; a module that cannot be "
        "found stops the start.",
        "`user_dependency`",
    ),
    Variable(
        PREFIX + "EXCLUDED_URLS",
        "comma-separated regexes",
        "`OTEL_PYTHON_EXCLUDED_URLS`",
        "URLs (searched in the full URL) that get no span, no user and no analytics.",
        "`excluded_urls`",
    ),
    Variable(
        PREFIX + "CHILD_SPANS",
        "`true` or `false`",
        "`true`",
        "Put `user.id` on the spans started during the request.",
        "`child_spans`",
    ),
    Variable(
        PREFIX + "INTERNAL_SPANS",
        "`true` or `false`",
        "`false`",
        "Keep the ASGI middleware's `http send`/`http receive` spans.",
        "`internal_spans`",
    ),
    Variable(
        PREFIX + "MIN_STATUS_TO_CAPTURE",
        "an HTTP status",
        "`500`",
        "Handled exceptions whose response has at least this status are recorded.",
        "`min_status_to_capture`",
    ),
    Variable(
        PREFIX + "SCRUB_QUERY_KEYS",
        "comma-separated words",
        "password, token, secret, key, auth, session, email, code, ...",
        "Parameters whose values become `REDACTED` in URLs, the referrer, exception text and events.",
        "`scrub_query_keys`",
    ),
    Variable(
        PREFIX + "REGISTERED_NAMES",
        "`true` or `false`",
        "`false`",
        "Also write the registered semantic-convention names beside the `user_tracking.*` ones: "
        "`session.id`, `enduser.pseudo.id`, `user_agent.synthetic.type`, `enduser.id`.",
        "`registered_names`",
    ),
    Variable(
        PREFIX + "RAISE_INTERNAL_ERRORS",
        "`1`",
        "unset",
        "Re-raise this package's own internal errors instead of logging and swallowing them "
        "(for this package's test suite; never in production).",
        "`otel_user_tracking.testing.internal_errors_raise()`",
    ),
    Variable(
        PREFIX + "SESSION_HEADER",
        "a header name",
        "`x-session-id`",
        "The request header whose value is the analytics `session_id`.",
        "`session_header`",
        group="Analytics events",
    ),
    Variable(
        PREFIX + "HONOR_PRIVACY_SIGNALS",
        "`true` or `false`",
        "`true`",
        "Requests with `DNT: 1` or `Sec-GPC: 1` give events with no user fields, address or visitor id.",
        "`honor_privacy_signals`",
        group="Analytics events",
    ),
    Variable(
        PREFIX + "IGNORE_BOTS",
        "`true` or `false`",
        "`true`",
        "Known bots and crawlers make no pageviews.",
        "`ignore_bots`",
        group="Analytics events",
    ),
    Variable(
        PREFIX + "SITE",
        "text",
        "empty",
        "Part of the visitor-id hash, so one visitor has different ids on two sites.",
        "`site`",
        group="Analytics events",
    ),
    Variable(
        PREFIX + "VISITOR_SECRET",
        "a secret of at least 16 bytes",
        "none: the store keeps each day's salt",
        "Derive each UTC day's visitor-id salt from this secret (HMAC of the day), for processes "
        "that share no store; whoever holds it can recompute past days' salts (see Privacy).",
        "`visitor_secret`",
        group="Analytics events",
    ),
    Variable(
        PREFIX + "ANALYTICS_SAMPLER",
        "`true` or `false`",
        "`true`",
        "Wrap the tracer provider's sampler so analytics count every request under trace sampling.",
        "`analytics_sampler`",
        group="Analytics events",
    ),
    _delivery(
        "SINKS",
        "comma-separated sink URLs, or `none`",
        "`sqlite:///./otel-user-tracking.db`",
        "Where analytics events go (see [sinks](sinks.md)): `postgresql://user:password@host/db` is "
        "the store a fleet shares ([the PostgreSQL store](store.md#the-postgresql-store)); `none` "
        "turns analytics off. Unset, the "
        "default store moves to the user's state directory where the working directory cannot hold it.",
        "`AnalyticsSpanProcessor(sinks=...)`",
    ),
    _delivery(
        "WEBHOOK_AUTHORIZATION",
        "a header value",
        "none",
        "The `Authorization` header of webhook sinks (never in the URL).",
        "`WebhookSink(authorization=...)`",
    ),
    _delivery(
        "FLUSH_AT", "1 to 100 000 events", "`100`", "Send when this many events are queued.", "`flush_at`"
    ),
    _delivery(
        "FLUSH_INTERVAL",
        "0.001 to 3 600 seconds",
        "`5`",
        "Send at least this often while events are queued.",
        "`flush_interval`",
    ),
    _delivery(
        "MAX_QUEUE_SIZE",
        "1 to 10 000 000 events",
        "`10000`",
        "Events held per sink; beyond it new ones are dropped and counted.",
        "`max_queue_size`",
    ),
    _delivery(
        "MAX_RETRIES", "0 to 100", "`5`", "Retries of one batch after its first attempt.", "`max_retries`"
    ),
    _delivery(
        "MAX_BACKOFF",
        "0.001 to 3 600 seconds",
        "`30`",
        "Cap of the exponential backoff and of `Retry-After`.",
        "`max_backoff`",
    ),
    _delivery(
        "INITIAL_BACKOFF",
        "0.001 to 3 600 seconds",
        "`0.5`",
        "First backoff; doubles per retry, with full jitter.",
        "`initial_backoff`",
    ),
    _delivery(
        "SHUTDOWN_TIMEOUT",
        "0 to 3 600 seconds",
        "`4`",
        "The whole budget of a shutdown; what is undelivered then is counted, not waited for.",
        "`shutdown_timeout`",
    ),
    _delivery(
        "OUTBOX",
        "`sqlite:///path.db`",
        "off",
        "Durable delivery: events for remote sinks are stored in this outbox before they are sent; "
        "the embedded store commits at least every 0.2 s.",
        "`AnalyticsSpanProcessor(durable=...)`",
    ),
    _delivery(
        "MAX_OUTBOX_SIZE",
        "1 to 1 000 000 000 events",
        "`1000000`",
        "Events the outbox keeps per remote sink; beyond it the oldest are dropped and counted.",
        "`max_outbox_size`",
    ),
    _store(
        "RETENTION",
        "a duration (`90d`, `12w`, `36h`) or `0`",
        "`90d`",
        "Events older than this are deleted, at most once a minute; `0` keeps everything. The "
        "PostgreSQL store drops the day partitions wholly older than this.",
    ),
    _store(
        "MAX_STORE_MB",
        "megabytes, or `0`",
        "`0` (no cap)",
        "The oldest events also go once the events take more than this (PostgreSQL: the oldest "
        "day partitions, never today's).",
    ),
)

GROUPS = ("Tag policy", "Requests and spans", "Analytics events", "Analytics delivery", "The embedded store")

__all__ = ["GROUPS", "PREFIX", "VARIABLES", "Variable"]

"""Span attribute and event names this package writes and reads, in one place.

The middleware writes them on the server span; the analytics conversion reads them back, so
an event never holds anything the span (and therefore the TagPolicy) did not allow.
"""

from __future__ import annotations

from .policy import USER_FIELDS

USER_ID = "user.id"
USER_NAME = "user.name"
USER_EMAIL = "user.email"
USER_ROLES = "user.roles"
USER_PREFIX = "user."  # and an extra field's name (``set_user(plan="pro")``: ``user.plan``)
USER_FIELD_KEYS: tuple[str, ...] = tuple(f"user.{field}" for field in USER_FIELDS)  # user.id, user.name, ...
CLIENT_ADDRESS = "client.address"

HTTP_ROUTE = "http.route"

# Our own namespace for request facts the analytics need and semconv has no name for.
REQUEST_TYPE = "user_tracking.request_type"  # "http" | "websocket": the span is ours to convert
VISITOR_ID = "user_tracking.visitor_id"
SESSION_ID = "user_tracking.session_id"
# The frontend's PostHog distinct id (X-POSTHOG-DISTINCT-ID) in the policy's form for user ids.
POSTHOG_DISTINCT_ID = "user_tracking.posthog_distinct_id"
REFERRER = "user_tracking.referrer"
LOCALE = "user_tracking.locale"
PRIVACY_SIGNAL = "user_tracking.privacy_signal"  # Sec-GPC: 1 or DNT: 1 was sent
BOT = "user_tracking.bot"
EXCLUDED = "user_tracking.excluded"  # excluded URL: the span exists only via another layer
HOST = "user_tracking.host"

# Registered semantic-convention names written beside ours under ``registered_names=True``.
REGISTERED_NAMES = {SESSION_ID: "session.id", VISITOR_ID: "enduser.pseudo.id"}
SYNTHETIC_TYPE = "user_agent.synthetic.type"  # "bot" where our detector finds one and contrib did not
ENDUSER_ID = "enduser.id"  # beside user.id, in the policy's form

# A custom event recorded by track(): a span event with this attribute set to "custom".
EVENT_TYPE = "user_tracking.event_type"
EVENT_ID = "user_tracking.event_id"
EVENT_META_PREFIX = "user_tracking.meta."

# Attributes other instrumentations use for the client address; the policy rewrites them all.
CLIENT_ADDRESS_KEYS = frozenset(
    {
        "client.address",
        "client.socket.address",
        "network.peer.address",
        "net.peer.ip",
        "net.sock.peer.addr",
        "http.client_ip",
        "http.peer.ip",
        "source.address",
    }
)
# Captured request headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST) that carry it.
CLIENT_ADDRESS_HEADER_KEYS = frozenset(
    {
        "http.request.header.x_forwarded_for",
        "http.request.header.x-forwarded-for",
        "http.request.header.forwarded",
        "http.request.header.x_real_ip",
        "http.request.header.x-real-ip",
        "http.request.header.true_client_ip",
        "http.request.header.cf_connecting_ip",
    }
)
# URL attributes (old and stable semconv) whose query string the scrubber rewrites.
URL_QUERY_KEYS = frozenset({"url.query"})
URL_WITH_QUERY_KEYS = frozenset({"http.target", "http.url", "url.full"})

"""The per-request steps: the request's facts onto the span, the response, the end.

Shared by every way the middleware gets its server span (made here, made by the ASGI
middleware, or made by an outer layer), so all three tag spans the same way.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.http import sanitize_method

from .. import attributes as attrs
from .._spans import span_attributes
from ..agents import NOT_PEOPLE, client_class, synthetic_type
from ..types import Message, Scope
from .client_address import mentioned_addresses, resolve_client_address
from .framework import UNMATCHED
from .headers import RequestFacts, read_facts
from .scrubbing import clean_attributes, enforce_on_span
from .starlette_routes import matched_route
from .state import RequestState
from .user_tags import refresh_user

if TYPE_CHECKING:
    from .prepared import PreparedRequest


class RequestView:
    """The request's facts under the policy: what our attributes are, which addresses to hide."""

    def __init__(self, scope: Scope, prepared: PreparedRequest, facts: Optional[RequestFacts] = None) -> None:
        config = prepared.config
        policy = config.tag_policy
        if facts is None:
            facts = read_facts(scope, config.session_header)
        client = resolve_client_address(
            facts.peer, facts.x_forwarded_for, facts.forwarded, policy.trusted_networks
        )
        self.addresses = (
            None
            if policy.ip == "keep"
            else mentioned_addresses(facts.peer, facts.x_forwarded_for, facts.forwarded)
        )
        self.scrubber = prepared.scrubber
        values: dict[str, Any] = {attrs.REQUEST_TYPE: scope.get("type", "http")}
        client_value = policy.apply_ip(client)
        if client_value is not None:
            values[attrs.CLIENT_ADDRESS] = client_value
        if facts.privacy_signal:
            values[attrs.PRIVACY_SIGNAL] = True
        sender = client_class(facts.user_agent)
        if sender in NOT_PEOPLE:
            values[attrs.BOT] = True
        if facts.host:
            values[attrs.HOST] = facts.host
        if facts.referrer:
            values[attrs.REFERRER] = prepared.scrubber.url(facts.referrer)
        locale = facts.locale
        if locale:
            values[attrs.LOCALE] = locale
        if facts.session_id:
            values[attrs.SESSION_ID] = facts.session_id
        if not (facts.privacy_signal and config.honor_privacy_signals):
            visitor = prepared.visitors.visitor_id(client or "", facts.user_agent or "")
            if visitor is not None:  # None: the day's salt is not known yet (salts/stored.py)
                values[attrs.VISITOR_ID] = visitor
            if facts.posthog_distinct_id:
                # The frontend may have identified the person by the raw user id: the same policy.
                distinct = policy.apply_id(facts.posthog_distinct_id)
                if distinct:
                    values[attrs.POSTHOG_DISTINCT_ID] = distinct
        # user_agent.synthetic.type of a bot or a monitor, unless another layer set one
        self.synthetic: Optional[str] = None
        if config.registered_names:
            values.update(
                {name: values[ours] for ours, name in attrs.REGISTERED_NAMES.items() if ours in values}
            )
            self.synthetic = synthetic_type(sender)
        self.values = values

    def clean_with_ours(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The ASGI middleware's attributes under the policy, plus ours."""
        clean_attributes(attributes, self.addresses, self.scrubber)
        attributes.update(self.values)
        if self.synthetic:
            attributes.setdefault(attrs.SYNTHETIC_TYPE, self.synthetic)
        return attributes


def adopt(
    span: trace.Span,
    scope: Scope,
    prepared: PreparedRequest,
    *,
    created: bool,
    facts: Optional[RequestFacts] = None,
) -> RequestState:
    """Bring a span another layer made under the policy and tag it with the request facts."""
    request = RequestView(scope, prepared, facts)
    values = enforce_on_span(span, request.addresses, prepared.scrubber)
    values.update(request.values)
    if request.synthetic and attrs.SYNTHETIC_TYPE not in span_attributes(span):
        values[attrs.SYNTHETIC_TYPE] = request.synthetic
    span.set_attributes(values)
    return RequestState(span, scope, prepared.config, created=created)


def note_response_start(state: RequestState, message: Message) -> None:
    """Record the status, the exception a handler turned into this response, and the user."""
    note_response_status(state, int(message.get("status", 0)))


def note_response_status(state: RequestState, status: int) -> None:
    """``note_response_start`` for any protocol: the response's status is ``status``."""
    state.status_code = status
    if not state.span.is_recording():
        pass  # as contrib: nothing is set on a span that records nothing
    elif state.status_setter is not None:
        state.status_setter(state.span, status)
    elif status >= 500:
        state.span.set_status(Status(StatusCode.ERROR))
    if status >= state.config.min_status_to_capture:
        handled = sys.exc_info()[1]
        if isinstance(handled, Exception):
            # Sent while handling an exception, outside every layer of the app: Starlette's
            # ServerErrorMiddleware, which re-raises it after this 500.
            # It was answered (contrib records it with exception.escaped=false), even if re-raised.
            state.exceptions.handled.append(handled)
            state.exceptions.record_once(handled, escaped=False)
    refresh_user(state)


def finish_request(state: RequestState) -> None:
    """Last user refresh, held-back exceptions, route: at the last body, or at the end."""
    span = state.span
    if state.finished or not span.is_recording():
        return
    state.finished = True
    scope = state.scope
    # Kept for the span's end (duration metric), so older Starlette's re-match runs once.
    found = state.found_route
    route = state.route = found if found is not None else route_template(scope, state.before_routing)
    refresh_user(state)
    handled = state.handled_exception
    if handled is not None and (state.status_code or 0) >= state.config.min_status_to_capture:
        state.exceptions.record_once(handled, escaped=False)
    state.exceptions.flush()
    if not route:
        # No route matched: Starlette's router leaves itself in the scope, other adapters
        # report it; named by the method alone, as contrib names it, never by the raw path.
        unmatched = route == UNMATCHED or (
            route is None and scope.get("type") == "http" and "router" in scope
        )
        if unmatched and state.created and HOOK_NAMED_KEY not in scope:
            span.update_name(_bare_method(scope))
        return
    if state.created or attrs.HTTP_ROUTE not in span_attributes(span):
        span.set_attribute(attrs.HTTP_ROUTE, route)
    if state.created and HOOK_NAMED_KEY not in scope:
        span.update_name(f"{_bare_method(scope)} {route}")


# Set in the scope (environ) when the app's request hook renamed the span: its name stays.
HOOK_NAMED_KEY = "otel_user_tracking.hook_named"


def noting_rename(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook(span, scope, ...)`` that notes in the scope when it renamed the span, so the
    route's name at the end leaves the hook's in place, as contrib's instrumentations do
    (they name the span before the hook runs, and never after)."""

    def hook_noting_rename(span: Any, scope: Any, *args: Any) -> None:
        before = getattr(span, "name", None)
        try:
            hook(span, scope, *args)
        finally:
            if getattr(span, "name", None) != before:
                scope[HOOK_NAMED_KEY] = True

    return hook_noting_rename


def _bare_method(scope: Scope) -> str:
    """The request's method as the span name shows it: ``HTTP`` for an unknown one (never the
    raw method, which a client chooses), ``WS`` for a WebSocket; ASGI or WSGI."""
    if scope.get("type") == "websocket":
        return "WS"
    method = str(scope.get("method") or scope.get("REQUEST_METHOD") or "").strip()
    if method not in _STANDARD_METHODS:  # what sanitize_method keeps as it is, whatever the environment
        method = sanitize_method(method)  # reads OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS
    return "HTTP" if method in ("_OTHER", "") else method


_STANDARD_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


def route_template(scope: Scope, before_routing: Optional[tuple[Any, Any]] = None) -> Optional[str]:
    """``/users/{id}`` from Starlette/FastAPI's matched route, mount prefix included.

    ``before_routing`` (``RequestState.before_routing``) finds the route where the router
    does not record it in the scope.
    """
    route, root_path = matched_route(scope, before_routing)
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    prefix = root_path.rstrip("/")
    own = getattr(route, "path", None)
    if isinstance(own, str) and own and path_format == own + "/{path}" and prefix.endswith(own):
        # The route is a Mount serving an app (StaticFiles): its format holds its own path,
        # which the root path inside it ends with too (``/static/{path}``, as FastAPI names it).
        prefix = prefix[: -len(own)]
    return (prefix + _included_prefix(scope, route) + path_format) or "/"


def _included_prefix(scope: Scope, route: Any) -> str:
    """The ``include_router(..., prefix=...)`` prefixes FastAPI 0.137+ leaves off the route it
    puts in the scope: its ``effective_route_context`` has the full path."""
    found = scope.get("fastapi")
    context = found.get("effective_route_context") if isinstance(found, dict) else None
    full, own = getattr(context, "path", None), getattr(route, "path", None)
    if isinstance(full, str) and isinstance(own, str) and own and full != own and full.endswith(own):
        return full[: -len(own)]
    return ""


def full_url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    server = scope.get("server")
    host = ""
    for name, value in scope.get("headers") or ():
        if bytes(name).lower() == b"host":
            host = bytes(value).decode("latin-1")
            break
    if not host and server:
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    path = str(scope.get("root_path", "")) + str(scope.get("path", ""))
    query = scope.get("query_string") or b""
    url = f"{scheme}://{host}{path}"
    if isinstance(query, str):  # Django's AsyncClient sends a str, as contrib tolerates
        return f"{url}?{query}"
    return f"{url}?{bytes(query).decode('latin-1')}" if query else url

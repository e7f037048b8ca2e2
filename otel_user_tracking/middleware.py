"""The ASGI middleware: one user-tagged server span per HTTP or WebSocket request.

If an outer layer (FastAPI's native tracing, the contrib FastAPI instrumentation, Starlette's
``OpenTelemetryMiddleware``, a hand-added contrib ``OpenTelemetryMiddleware``) already made
the server span, the middleware enriches that span; otherwise it makes the span with
``opentelemetry-instrumentation-asgi``'s middleware and enriches it. Either way the request
gets exactly one SERVER span, and nothing here raises into the application.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, replace
from typing import Any, Optional

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import attributes as attrs
from ._errors import report_internal_error
from ._request import read_facts
from ._tagging import refresh_user
from .bots import is_bot
from .client_address import mentioned_addresses, resolve_client_address
from .config import Config, _settings, get_config
from .context import (
    RequestState,
    _current,
    deduplicate_exception_events,
    flush_pending_exceptions,
    record_exception_once,
)
from .scrubbing import enforce_on_span, scrub_url
from .types import ASGIApp, Message, Receive, Scope, Send
from .visitor import VisitorIdentifier

_logger = logging.getLogger(__name__)

SCOPE_KEY = "otel_user_tracking.request"
_PHASE_KEY = "otel_user_tracking.phase"  # where the span-making layer is: "app", then "done"
SHUTDOWN_FLUSH_SECONDS = 10.0


@dataclass(frozen=True)
class _Prepared:
    """Everything derived from one Config, computed once per configuration change."""

    config: Config
    span_maker: Any
    visitors: VisitorIdentifier


class UserTrackingMiddleware:
    """Wraps any ASGI app so each request's server span carries the user, as the policy allows.

    Usage: ``app = UserTrackingMiddleware(app, tag_policy=TagPolicy(email="mask"))`` for
    Django's ``asgi.py``, Litestar, Quart or any ASGI app; Starlette and FastAPI apps get it
    automatically from ``UserTrackingInstrumentor``.

    Args:
        app: The ASGI application.
        tracer_provider: Provider for the spans this middleware makes (default: global).
        meter_provider: Provider for the ASGI middleware's HTTP metrics (default: global).
        **options: Any ``Config`` field (``tag_policy``, ``user_resolver``, ``excluded_urls``,
            ...); they win over ``configure()`` and the environment for this app.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        meter_provider: Any = None,
        **options: Any,
    ) -> None:
        self.app = app
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._options = options
        if options:
            replace(get_config(), **options)  # validate now: bad options fail at construction
        self._prepared: Optional[_Prepared] = None
        self._generation = -1

    def _prepare(self) -> _Prepared:
        generation = _settings.generation
        prepared = self._prepared
        if prepared is not None and self._generation == generation:
            return prepared
        config = get_config()
        if self._options:
            config = replace(config, **self._options)
        previous = prepared.config if prepared else None
        if prepared is None or previous != config:
            prepared = _Prepared(
                config=config,
                span_maker=OpenTelemetryMiddleware(
                    _SpanEnricher(self),
                    tracer_provider=self._tracer_provider,
                    meter_provider=self._meter_provider,
                    exclude_spans=None if config.internal_spans else ["receive", "send"],
                ),
                visitors=VisitorIdentifier(site=config.site),
            )
            _ensure_child_span_processor(self._tracer_provider)
        self._prepared, self._generation = prepared, generation
        return prepared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self.app(scope, receive, _flush_on_shutdown(send))
            return
        if kind not in ("http", "websocket") or SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        try:
            prepared = self._prepare()
            skip = prepared.config.is_excluded(_full_url(scope)) if prepared.config.excluded_urls else False
            current = trace.get_current_span()
            enrich_current = current.is_recording() and getattr(current, "kind", None) is SpanKind.SERVER
        except Exception as exc:
            report_internal_error("middleware", exc)
            skip = True
        if skip:
            await self.app(scope, receive, send)
        elif enrich_current:
            await self.enrich(scope, receive, send, prepared, created=False)
        else:
            await self._make_span(scope, receive, send, prepared)

    async def _make_span(self, scope: Scope, receive: Receive, send: Send, prepared: _Prepared) -> None:
        """Run the app under the ASGI middleware's span; its own failures never reach the app.

        It can fail before the app runs (it decodes the query string as UTF-8) or after.
        Only an exception raised by the application itself propagates.
        """
        try:
            await prepared.span_maker(scope, receive, send)
        except Exception as exc:
            phase = scope.pop(_PHASE_KEY, None)
            if phase == "app":
                raise
            report_internal_error("span", exc, user_code=True)
            if phase is None:
                await self.app(scope, receive, send)
        else:
            scope.pop(_PHASE_KEY, None)

    async def enrich(
        self, scope: Scope, receive: Receive, send: Send, prepared: _Prepared, *, created: bool
    ) -> None:
        """Run the app with the current (server) span tagged and the request state set."""
        state: Optional[RequestState] = None
        try:
            state = _begin(trace.get_current_span(), scope, prepared)
        except Exception as exc:
            report_internal_error("request_start", exc)
        if state is None:
            await self.app(scope, receive, send)
            return
        token = _current.set(state)
        scope[SCOPE_KEY] = state

        async def send_with_tracking(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                try:
                    note_response_start(state, message)
                except Exception as exc:
                    report_internal_error("response_start", exc)
            elif kind == "http.response.body" and not message.get("more_body", False):
                # An outer layer (FastAPI's native tracing) may end the span once this is sent.
                try:
                    _finish(state, scope, created)
                except Exception as exc:
                    report_internal_error("response_end", exc)
            await send(message)

        try:
            await self.app(scope, receive, send_with_tracking)
        except Exception as exc:
            try:
                record_exception_once(state, exc, escaped=True)
                if state.span.is_recording():
                    state.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            except Exception as error:
                report_internal_error("exception", error)
            raise
        finally:
            try:
                _finish(state, scope, created)
            except Exception as exc:
                report_internal_error("request_end", exc)
            scope.pop(SCOPE_KEY, None)
            try:
                _current.reset(token)
            except ValueError:
                _current.set(None)


class _SpanEnricher:
    """The app the span-making ASGI middleware wraps: enriches the span it just made."""

    def __init__(self, owner: UserTrackingMiddleware) -> None:
        self.owner = owner
        self.app = owner.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PHASE_KEY] = "app"
        prepared = self.owner._prepare()
        await self.owner.enrich(scope, receive, send, prepared, created=True)
        scope[_PHASE_KEY] = "done"


def _begin(span: trace.Span, scope: Scope, prepared: _Prepared) -> RequestState:
    config = prepared.config
    policy = config.tag_policy
    facts = read_facts(scope, config.session_header)
    client = resolve_client_address(
        facts.peer, facts.x_forwarded_for, facts.forwarded, policy.trusted_networks
    )
    addresses = mentioned_addresses(facts.peer, facts.x_forwarded_for, facts.forwarded)
    enforce_on_span(span, addresses, policy.apply_ip(client), config.scrub_query_keys)
    values: dict[str, Any] = {
        attrs.REQUEST_TYPE: scope["type"],
        attrs.PRIVACY_SIGNAL: facts.privacy_signal,
        attrs.BOT: is_bot(facts.user_agent),
    }
    if facts.host:
        values[attrs.HOST] = facts.host
    if facts.referrer:
        values[attrs.REFERRER] = scrub_url(facts.referrer, config.scrub_query_keys)
    locale = facts.locale
    if locale:
        values[attrs.LOCALE] = locale
    if facts.session_id:
        values[attrs.SESSION_ID] = facts.session_id
    if not (facts.privacy_signal and config.honor_privacy_signals):
        values[attrs.VISITOR_ID] = prepared.visitors.visitor_id(client or "", facts.user_agent or "")
    span.set_attributes(values)
    state = RequestState(span=span, scope=scope, config=config)
    deduplicate_exception_events(state)
    return state


def note_response_start(state: RequestState, message: Message) -> None:
    """Record the status, the exception a handler turned into this response, and the user."""
    status = int(message.get("status", 0))
    state.status_code = status
    if status >= 500:
        state.span.set_status(Status(StatusCode.ERROR))
    if status >= state.config.min_status_to_capture:
        handled = sys.exc_info()[1]
        if isinstance(handled, Exception):
            # Sent while handling an exception, outside every layer of the app: Starlette's
            # ServerErrorMiddleware, which re-raises it after this 500.
            record_exception_once(state, handled, escaped=status >= 500)
    refresh_user(state)


def _finish(state: RequestState, scope: Scope, created: bool) -> None:
    """Last user refresh, held-back exceptions, route; runs at the last body and at the end."""
    span = state.span
    if not span.is_recording():
        return
    refresh_user(state)
    flush_pending_exceptions(state)
    route = _route_template(scope)
    if route is not None:
        existing = getattr(span, "attributes", None) or {}
        if attrs.HTTP_ROUTE not in existing:
            span.set_attribute(attrs.HTTP_ROUTE, route)
        if created:
            method = "WS" if scope["type"] == "websocket" else str(scope.get("method", "HTTP"))
            span.update_name(f"{method} {route}")


def _route_template(scope: Scope) -> Optional[str]:
    """``/users/{id}`` from Starlette/FastAPI's matched route, mount prefix included."""
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    return (str(scope.get("root_path", "")).rstrip("/") + path_format) or "/"


def _full_url(scope: Scope) -> str:
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
    return f"{url}?{bytes(query).decode('latin-1')}" if query else url


def _ensure_child_span_processor(tracer_provider: Optional[trace.TracerProvider]) -> None:
    from ._child_spans import ensure_user_id_processor

    ensure_user_id_processor(tracer_provider or trace.get_tracer_provider())


def _flush_on_shutdown(send: Send) -> Send:
    """Flush spans and analytics when the app's lifespan shutdown completes.

    uvicorn re-raises SIGTERM after its graceful shutdown, so interpreter exit handlers
    (and with them ``TracerProvider.shutdown``) never run; the lifespan shutdown does.
    """

    async def send_and_flush(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                await asyncio.get_running_loop().run_in_executor(None, flush_everything)
            except Exception as exc:
                report_internal_error("shutdown_flush", exc)
        await send(message)

    return send_and_flush


def flush_everything(timeout_s: float = SHUTDOWN_FLUSH_SECONDS) -> None:
    """Force-flush the global tracer provider and every AnalyticsSpanProcessor."""
    from .processor import flush_all_processors

    flush_all_processors(timeout_s)
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_s * 1000))

"""The ASGI middleware: one user-tagged server span per HTTP or WebSocket request.

If an outer layer (FastAPI's native tracing, the contrib FastAPI instrumentation, Starlette's
``OpenTelemetryMiddleware``, a hand-added contrib ``OpenTelemetryMiddleware``) already made
the server span, the middleware enriches that span; otherwise it makes the span from
``opentelemetry-instrumentation-asgi``'s pieces (or its whole middleware, for internal spans).
Either way the request gets exactly one SERVER span, and nothing here raises into the app.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY, Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_setter, get_default_span_details
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY_PLAIN
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import attributes as attrs
from .._errors import report_internal_error
from ..config import Config
from ..types import ASGIApp, Message, Receive, Scope, Send
from .current import REQUEST as _current
from .front_door import FrontDoor
from .lifecycle import (
    RequestView,
    adopt,
    finish_request,
    full_url,
    note_response_start,
    noting_rename,
    route_template,
)
from .lifespan import serve_lifespan
from .prepared import Prepared
from .scrubbing import QueryScrubber
from .server_metrics import content_length
from .server_span import ServerSpanMaker
from .starlette_routes import route_before_routing
from .state import RequestState
from .visitor import VisitorIdentifier

SCOPE_KEY = "otel_user_tracking.request"
_PHASE_KEY = "otel_user_tracking.phase"  # where the span-making layer is: "app", then "done"


class UserTrackingMiddleware(FrontDoor[Prepared]):
    """Wraps any ASGI app so each request's server span carries the user, as the policy allows.

    Usage: ``app = UserTrackingMiddleware(app, tag_policy=TagPolicy(email="mask"))`` for
    Django's ``asgi.py``, Litestar, Quart or any ASGI app; Starlette and FastAPI apps get it
    automatically from ``UserTrackingInstrumentor``.

    Args:
        app: The ASGI application.
        tracer_provider: Provider for the spans this middleware makes (default: global).
        meter_provider: Provider for the HTTP server metrics (default: global).
        **options: Any ``Config`` field (``tag_policy``, ``user_resolver``, ``excluded_urls``,
            ...); they win over ``configure()`` and the environment for this app.
    """

    app: ASGIApp

    def _derive(self, config: Config) -> Prepared:
        return Prepared(
            config=config,
            maker=ServerSpanMaker(self._tracer_provider, self._meter_provider),
            asgi_middleware=OpenTelemetryMiddleware(
                _SpanEnricher(self),
                tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider,
                server_request_hook=_noting_rename(config.server_request_hook),
                client_request_hook=config.client_request_hook,
                client_response_hook=config.client_response_hook,
                default_span_details=_span_details_with_route,
            ),
            visitors=VisitorIdentifier(site=config.site, secret=config.visitor_secret),
            scrubber=QueryScrubber(config.scrub_query_keys),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await serve_lifespan(self.app, scope, receive, send)
            return
        outside = otel_context.get_current()  # the context the request came in with
        if kind not in ("http", "websocket") or SCOPE_KEY in scope or _suppressed(outside):
            await self.app(scope, receive, send)  # suppressed (``suppress_http_instrumentation``): no span
            return
        try:
            prepared = self._prepare()
            config = prepared.config
            skip = False
            if config.excluded_urls or prepared.maker.excluded:
                url = full_url(scope)
                skip = config.is_excluded(url) or prepared.maker.is_excluded(url)
            current = trace.get_current_span(outside)
            enrich_current = current.is_recording() and getattr(current, "kind", None) is SpanKind.SERVER
        except Exception as exc:
            report_internal_error("middleware", exc)
            skip = True
        if skip:
            await self.app(scope, receive, send)
        elif enrich_current:
            await self._enrich_span_of_another_layer(current, scope, receive, send, prepared)
        elif config.internal_spans:
            await self._with_asgi_middleware(scope, receive, send, prepared)
        else:
            await self._with_new_span(scope, receive, send, prepared, outside)

    async def _with_new_span(
        self, scope: Scope, receive: Receive, send: Send, prepared: Prepared, outside: Context
    ) -> None:
        """Make the server span ourselves, policy-clean from the start, and run the app in it."""
        try:
            request = RequestView(scope, prepared)
        except Exception as exc:
            report_internal_error("request_start", exc)
            await self.app(scope, receive, send)
            return
        try:
            span, token, metric_attributes = prepared.maker.start(scope, request.clean_with_ours, outside)
        except Exception as exc:  # the ASGI helpers reject some requests (non-UTF-8 query)
            report_internal_error("span_start", exc, user_code=True)
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = RequestState(
            span, scope, prepared.config, created=True, status_setter=prepared.maker.semconv.set_status
        )
        send = prepared.maker.police_response_headers(span, send, prepared.scrubber, ours=True)
        try:
            await self._run(state, receive, send, outside)  # the span is current (``start`` made it so)
        finally:
            try:
                route = response_size = None
                if metric_attributes is not None:  # the metrics are recorded: what they need
                    route = state.route if state.finished else state.found_route
                    route = route or route_template(scope, state.before_routing)
                    response_size = content_length(state.response_headers)
                prepared.maker.end(
                    span, token, scope, metric_attributes, started, state.status_code, route, response_size
                )
            except Exception as exc:
                report_internal_error("span_end", exc)
            _retire(state, ended=True)

    async def _enrich_span_of_another_layer(
        self, span: trace.Span, scope: Scope, receive: Receive, send: Send, prepared: Prepared
    ) -> None:
        try:
            state = adopt(span, scope, prepared, created=False)
        except Exception as exc:
            report_internal_error("request_start", exc)
            await self.app(scope, receive, send)
            return
        send = prepared.maker.police_response_headers(span, send, prepared.scrubber, ours=False)
        try:
            await self._run(state, receive, send)
        finally:
            _retire(state, ended=False)

    async def _with_asgi_middleware(
        self, scope: Scope, receive: Receive, send: Send, prepared: Prepared
    ) -> None:
        """Run under the full ASGI middleware (internal send/receive spans); its failures stay ours.

        It can fail before the app runs (it decodes the query string as UTF-8) or after.
        Only an exception raised by the application itself propagates.
        """
        try:
            await prepared.asgi_middleware(scope, receive, send)
        except Exception as exc:
            phase = scope.pop(_PHASE_KEY, None)
            if phase == "app":
                raise
            report_internal_error("span", exc, user_code=True)
            if phase is None:
                await self.app(scope, receive, send)
        else:
            scope.pop(_PHASE_KEY, None)

    async def _run(
        self,
        state: RequestState,
        receive: Receive,
        send: Send,
        outside: Optional[Context] = None,
        hooks: bool = True,
    ) -> None:
        """Run the app with the request state set; track the response and what escapes.

        With ``outside`` (the span is ours and we made it current), the response gets the
        global response propagator's headers (``traceresponse``), and the span ends once the
        last body (or trailers) message is sent, as the contrib middleware ends its span: work
        the app does after the response (``BackgroundTasks``) is not the request's duration.
        That last message is sent in the outer context: what the server schedules while it
        completes the response copies the current context, and uvicorn's keep-alive timer keeps
        its copy in the loop's timer heap for a hundred requests more. Sent inside, that copy
        would hold the span and the request state long enough for them to reach the garbage
        collector's older generations. ``hooks`` False: the contrib middleware calls them.
        """
        scope = state.scope
        token = _current.set(state)
        scope[SCOPE_KEY] = state
        config = state.config
        response_hook = config.client_response_hook if hooks else None
        if hooks and config.server_request_hook is not None:
            _call_hook(noting_rename(config.server_request_hook), state.span, scope)
        if hooks and config.client_request_hook is not None:
            receive = _hooked_receive(config.client_request_hook, state.span, scope, receive)
        trailers = False
        # Read once a request (contrib reads it per message); most apps set none.
        propagator = get_global_response_propagator() if outside is not None else None  # type: ignore[no-untyped-call]

        async def send_with_tracking(message: Message) -> None:
            nonlocal trailers
            if response_hook is not None:
                _call_hook(response_hook, state.span, scope, message)
            if propagator is not None:
                _inject_response_headers(propagator, state.span, message)
            kind = message.get("type")
            if kind == "http.response.start":
                try:
                    note_response_start(state, message)
                    if outside is not None:
                        trailers = bool(message.get("trailers", False))
                        state.response_headers = message.get("headers")
                except Exception as exc:
                    report_internal_error("response_start", exc)
            elif kind == "http.response.body" and not message.get("more_body", False):
                # An outer layer (FastAPI's native tracing) may end the span once this is sent.
                try:
                    finish_request(state)
                except Exception as exc:
                    report_internal_error("response_end", exc)
                if outside is not None:
                    await _send_outside(outside, send, message)
                    if not trailers:
                        state.span.end()
                    return
            elif kind == "http.response.trailers" and trailers and not message.get("more_trailers", False):
                await _send_outside(outside, send, message)  # type: ignore[arg-type]
                state.span.end()
                return
            elif kind == "websocket.send" and state.status_code is None:
                _websocket_status(state)
            await send(message)

        try:
            await self.app(scope, receive, send_with_tracking)
        except Exception as exc:
            try:
                state.exceptions.record_once(exc, escaped=True)
                if state.span.is_recording():
                    state.span.set_status(Status(StatusCode.ERROR, _description(exc)))
            except Exception as error:
                report_internal_error("exception", error)
            raise
        finally:
            try:
                finish_request(state)
            except Exception as exc:
                report_internal_error("request_end", exc)
            scope.pop(SCOPE_KEY, None)
            try:
                _current.reset(token)
            except ValueError:
                _current.set(None)


class _SpanEnricher:
    """The app the full ASGI middleware wraps: adopts the span it just made."""

    def __init__(self, owner: UserTrackingMiddleware) -> None:
        self.owner = owner
        self.app = owner.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PHASE_KEY] = "app"
        try:
            state: Optional[RequestState] = adopt(
                trace.get_current_span(), scope, self.owner._prepare(), created=True
            )
        except Exception as exc:
            report_internal_error("request_start", exc)
            state = None
        if state is None:
            await self.app(scope, receive, send)
        else:
            prepared = self.owner._prepare()
            send = prepared.maker.police_response_headers(state.span, send, prepared.scrubber, ours=False)
            try:
                await self.owner._run(state, receive, send, hooks=False)
            finally:
                _retire(state, ended=False)
        scope[_PHASE_KEY] = "done"


def _suppressed(context: Context) -> bool:
    """``not is_http_instrumentation_enabled()`` for ``context``, read once instead of three times."""
    get = context.get
    return bool(
        get(_SUPPRESS_INSTRUMENTATION_KEY)
        or get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
        or get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
    )


def _description(exc: BaseException) -> str:
    """``ValueError: boom``, as ``use_span`` describes the status (the span's guard applies the policy)."""
    try:
        message = str(exc)
    except Exception:  # the app's __str__
        message = ""
    return f"{type(exc).__name__}: {message}"


def _websocket_status(state: RequestState) -> None:
    """A WebSocket that sends has status 200, as the contrib middleware records it."""
    try:
        state.status_code = 200
        if state.status_setter is not None:
            state.status_setter(state.span, 200)
    except Exception as exc:
        report_internal_error("response_start", exc)


def _inject_response_headers(propagator: Any, span: trace.Span, message: Message) -> None:
    """The global response propagator's headers (``traceresponse``) on each message we send,
    as the contrib middleware adds them."""
    try:
        propagator.inject(message, context=trace.set_span_in_context(span, Context()), setter=asgi_setter)
    except Exception as exc:
        report_internal_error("response_propagator", exc, user_code=True)


def _call_hook(hook: Callable[..., Any], span: trace.Span, *args: Any) -> None:
    """A user's hook, as contrib's ``failsafe`` calls it: what it raises is recorded on the span."""
    try:
        hook(span, *args)
    except Exception as exc:
        report_internal_error("hook", exc, user_code=True)
        try:
            span.record_exception(exc)
        except Exception as error:
            report_internal_error("hook", error)


def _span_details_with_route(scope: Scope) -> tuple[str, dict[str, Any]]:
    """Contrib's span details, with the Starlette or FastAPI route found at the start: contrib's
    instrumentations of those frameworks put ``http.route`` in the duration metric so."""
    name, attributes = get_default_span_details(scope)  # type: ignore[arg-type]
    route = route_before_routing(scope)
    if route:
        attributes = {**attributes, attrs.HTTP_ROUTE: route}
    return name, attributes


def _noting_rename(hook: Optional[Callable[..., Any]]) -> Optional[Callable[..., Any]]:
    return None if hook is None else noting_rename(hook)


def _hooked_receive(hook: Callable[..., Any], span: trace.Span, scope: Scope, receive: Receive) -> Receive:
    async def receive_with_hook() -> Message:
        message = await receive()
        _call_hook(hook, span, scope, message)
        return message

    return receive_with_hook


async def _send_outside(outside: Context, send: Send, message: Message) -> None:
    """``send(message)`` with ``outside`` current and no request state (see ``_run``)."""
    token = otel_context.attach(outside)
    request = _current.set(None)
    try:
        await send(message)
    finally:
        _current.reset(request)
        otel_context.detach(token)


def _retire(state: RequestState, *, ended: bool) -> None:
    """The request is over: let its state go (``RequestState.retire``).

    A span we ended gets its own ``record_exception`` back; a span another layer ends keeps
    the ledger, since that layer may still report the exception that escaped.
    """
    try:
        if ended:
            state.exceptions.uninstall()
        state.retire()
    except Exception as exc:
        report_internal_error("request_end", exc)

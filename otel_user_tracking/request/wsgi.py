"""The WSGI front door: one user-tagged server span per request, for any WSGI app.

If a layer outside (contrib's WSGI ``OpenTelemetryMiddleware``, a server's own tracing) already
made a recording SERVER span current, the middleware enriches that span; otherwise it makes
the span from ``opentelemetry-instrumentation-wsgi``'s pieces (``wsgi_span.py``). Either way
the request gets exactly one SERVER span, tagged with the same attributes as on the ASGI
side, and nothing here raises into the app. The request lasts until the body is exhausted or
the server closes the response iterable (PEP 3333), so a streamed body is inside the span.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional
from wsgiref.util import request_uri

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.wsgi import default_response_propagation_setter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._errors import report_internal_error
from ..config import Config
from ..types import Environ, StartResponse, WSGIApp
from .current import REQUEST as _current
from .front_door import FrontDoor, span_to_enrich
from .headers import read_environ_facts
from .lifecycle import RequestView, adopt, finish_request, note_response_status, noting_rename
from .scrubbing import QueryScrubber, clean_attributes, enforce_on_span
from .state import RequestState
from .visitor import VisitorIdentifier
from .wsgi_span import WSGISpanMaker, status_code

ENVIRON_KEY = "otel_user_tracking.request"
# Set by a framework adapter when the app's response body is in memory (not streamed): the
# request is over when the app returns, as contrib's framework instrumentations end it.
BODY_READY_KEY = "otel_user_tracking.body_ready"
_LATE_KEY = "otel_user_tracking.adopted"  # the exchange ``adopt_current`` started
_RESPONSE_SETTER: Any = default_response_propagation_setter


@dataclass(frozen=True)
class WSGIPrepared:
    """What the WSGI middleware derives from one ``Config``, once per configuration change."""

    config: Config
    maker: WSGISpanMaker
    visitors: VisitorIdentifier
    scrubber: QueryScrubber
    # The configured hooks as this door calls them: ``request_hook(span, environ)``,
    # ``response_hook(span, environ, status, headers)``; None when none is configured.
    request_hook: Optional[Callable[..., Any]] = None
    response_hook: Optional[Callable[..., Any]] = None


class UserTrackingWSGIMiddleware(FrontDoor[WSGIPrepared]):
    """Wraps any WSGI app so each request's server span carries the user, as the policy allows.

    Usage: ``app.wsgi_app = UserTrackingWSGIMiddleware(app.wsgi_app)`` for Flask (automatic
    under ``opentelemetry-instrument``), ``application = UserTrackingWSGIMiddleware(application)``
    for any other WSGI app.

    Args:
        app: The WSGI application.
        tracer_provider: Provider for the spans this middleware makes (default: global).
        meter_provider: Provider for the HTTP server metrics (default: global).
        **options: Any ``Config`` field (``tag_policy``, ``user_resolver``, ``excluded_urls``,
            ...); they win over ``configure()`` and the environment for this app. A
            ``user_resolver`` gets the WSGI environ; ``request_hook(span, environ)`` and
            ``response_hook(span, environ, status, response_headers)`` are called as contrib's
            WSGI middleware calls them.
    """

    app: WSGIApp
    # Whose signature the configured hooks have: "wsgi" (contrib's WSGI middleware's),
    # "flask" (``response_hook(span, status, headers)``), or "django" (the Django adapter
    # calls them with the request; the door calls none). Set by the framework adapters.
    hook_style: str = "wsgi"

    def _derive(self, config: Config) -> WSGIPrepared:
        request_hook = response_hook = None
        if self.hook_style != "django":
            request_hook = None if config.request_hook is None else noting_rename(config.request_hook)
            response_hook = config.response_hook
            if response_hook is not None and self.hook_style == "flask":
                response_hook = _flask_response_hook(response_hook)
        return WSGIPrepared(
            config=config,
            maker=WSGISpanMaker(self._tracer_provider, self._meter_provider),
            visitors=VisitorIdentifier(site=config.site, secret=config.visitor_secret),
            scrubber=QueryScrubber(config.scrub_query_keys),
            request_hook=request_hook,
            response_hook=response_hook,
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if ENVIRON_KEY in environ:  # an outer door has the request already
            return self.app(environ, start_response)
        started = time.perf_counter()  # the duration counts this door's own work, as contrib's does
        try:
            prepared = self._prepare()
            skip = _excluded(prepared, environ)
            outside = otel_context.get_current()
            theirs = span_to_enrich(outside)
        except Exception as exc:
            report_internal_error("wsgi_middleware", exc)
            skip = True
        if skip:
            return self.app(environ, start_response)
        if theirs is not None:
            return self._enrich(theirs, environ, start_response, prepared)
        return self._with_new_span(environ, start_response, prepared, outside, started)

    def _with_new_span(
        self,
        environ: Environ,
        start_response: StartResponse,
        prepared: WSGIPrepared,
        outside: Context,
        started: float,
    ) -> Iterable[bytes]:
        """Make the server span ourselves, policy-clean from the start, and run the app in it."""
        try:
            facts = read_environ_facts(environ, prepared.config.session_header)
            request = RequestView(environ, prepared, facts)
            span, token, metric_attributes = prepared.maker.start_wsgi(
                environ, request.clean_with_ours, outside
            )
        except Exception as exc:  # an environ the contrib helpers reject (a SERVER_PORT of "x")
            report_internal_error("span_start", exc, user_code=True)
            return self.app(environ, start_response)
        state = RequestState(
            span, environ, prepared.config, created=True, status_setter=prepared.maker.semconv.set_status
        )
        exchange = _Exchange(state, prepared, start_response, metric_attributes, started)
        return exchange.run(self.app, token)

    def _enrich(
        self, span: trace.Span, environ: Environ, start_response: StartResponse, prepared: WSGIPrepared
    ) -> Iterable[bytes]:
        """Tag the SERVER span a layer outside made, and run the app with the request tracked."""
        try:
            facts = read_environ_facts(environ, prepared.config.session_header)
            state = adopt(span, environ, prepared, created=False, facts=facts)
        except Exception as exc:
            report_internal_error("request_start", exc)
            return self.app(environ, start_response)
        return _Exchange(state, prepared, start_response).run(self.app)

    def adopt_current(self, environ: Environ) -> None:
        """Track a request whose SERVER span a layer inside the app made (contrib's Flask
        instrumentation starts it in a ``before_request`` hook): tag the current span, as
        the door does with a span made outside, until ``release(environ)``, which must run
        before that layer ends it. Nothing happens if no recording SERVER span is current
        or the door has the request already."""
        if ENVIRON_KEY in environ:
            return
        try:
            prepared = self._prepare()
            config = prepared.config
            if _excluded(prepared, environ):
                return
            span = span_to_enrich(otel_context.get_current())
            if span is None:
                return
            facts = read_environ_facts(environ, config.session_header)
            state = adopt(span, environ, prepared, created=False, facts=facts)
            exchange = _Exchange(state, prepared, _no_start_response)
            exchange.enter()
            environ[_LATE_KEY] = exchange
        except Exception as exc:
            report_internal_error("request_start", exc)

    def release(self, environ: Environ) -> None:
        """The request ``adopt_current`` tracks is over: finish it (route, user, exceptions)."""
        exchange = environ.pop(_LATE_KEY, None)
        if exchange is not None:
            exchange.police_captured_headers()
            exchange.end()
            exchange.leave()


class _Exchange:
    """One request through the door: its ``start_response``, its response iterable, its end.

    One object per request does all three (rather than a closure for each) and is the
    iterable the server gets. The request's context (its span current, the request state
    set) is attached while the app runs and again around each step of the response (the
    next chunk, ``close()``), never in between: a response the server never closes (a test
    client's, unread) leaves nothing attached to the thread for its next request. The
    request ends when the body is exhausted or closed, whichever comes first.
    """

    __slots__ = (
        "_ended",
        "_inside",
        "_iterator",
        "_metric_attributes",
        "_ours",
        "_prepared",
        "_response",
        "_start_response",
        "_started",
        "_state_token",
        "state",
    )

    def __init__(
        self,
        state: RequestState,
        prepared: WSGIPrepared,
        start_response: StartResponse,
        metric_attributes: Optional[dict[str, Any]] = None,
        started: Optional[float] = None,
    ) -> None:
        self.state = state
        self._prepared = prepared
        self._start_response = start_response
        self._ours = state.created
        self._metric_attributes = metric_attributes
        self._started = time.perf_counter() if started is None else started
        self._response: Any = None
        self._iterator: Optional[Iterator[bytes]] = None
        self._ended = False
        self._inside: Optional[Context] = None
        self._state_token: Any = None

    def enter(self) -> None:
        """The request is in flight: findable from the environ and the contextvar until ``end``."""
        self.state.scope[ENVIRON_KEY] = self.state
        self._state_token = _current.set(self.state)
        hook = self._prepared.request_hook
        if hook is not None:
            call_hook("request_hook", hook, self.state.span, self.state.scope)

    def run(self, app: WSGIApp, context_token: Optional[object] = None) -> Iterable[bytes]:
        """Call the app in the request's context (``context_token``: the span ours made current);
        the response comes back wrapped in ``self``."""
        self._inside = otel_context.get_current()
        self.enter()
        try:
            self._response = app(self.state.scope, self.start_response)
            if self.state.scope.pop(BODY_READY_KEY, False):
                response, self._response = self._response, None
                self.end()
                return response  # type: ignore[no-any-return]
        except Exception as exc:
            self._escaped(exc)
            self.end()
            raise
        except BaseException:
            self.end()
            raise
        finally:
            _reset_state(self._state_token)
            if context_token is not None:
                _detach(context_token)
        return self

    def start_response(self, status: str, headers: Any, *exc_info: Any) -> Any:
        state = self.state
        capture = self._prepared.maker.capture_response
        if not state.retired:
            try:
                code = status_code(status)
                if code is not None:
                    note_response_status(state, code)
                if capture and self._ours and getattr(state.span, "kind", None) is SpanKind.SERVER:
                    captured = self._prepared.maker.response_headers(headers)
                    state.span.set_attributes(clean_attributes(captured, (), self._prepared.scrubber))
            except Exception as exc:
                report_internal_error("response_start", exc)
            hook = self._prepared.response_hook
            if hook is not None:
                call_hook("response_hook", hook, state.span, state.scope, status, headers)
            if self._ours:
                _inject_response_headers(state.span, headers)
        write = self._start_response(status, headers, *exc_info)
        if not self._ours:
            self.police_captured_headers()  # the layer outside captured its response headers just now
        return write

    def police_captured_headers(self) -> None:
        """Bring what another layer captured of the response headers under the policy."""
        state = self.state
        if not self._prepared.maker.capture_response or state.retired:
            return
        try:
            state.span.set_attributes(enforce_on_span(state.span, (), self._prepared.scrubber))
        except Exception as exc:
            report_internal_error("response_headers", exc)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._ended:
            raise StopIteration
        context_token = otel_context.attach(self._inside)  # type: ignore[arg-type]
        state_token = _current.set(self.state)
        try:
            iterator = self._iterator
            if iterator is None:
                iterator = self._iterator = iter(self._response)
            return next(iterator)
        except StopIteration:
            try:
                self._close_response()  # the body is fully sent: closed now, as contrib closes it
            finally:
                self.end()
            raise
        except Exception as exc:
            self._escaped(exc)
            raise
        finally:
            _reset_state(state_token)
            _detach(context_token)

    def close(self) -> None:
        """The server is done with the response (PEP 3333): close the app's, end the request."""
        context_token = otel_context.attach(self._inside) if self._inside is not None else None
        state_token = _current.set(None if self._ended else self.state)
        try:
            self._close_response()
        finally:
            self.end()
            _reset_state(state_token)
            if context_token is not None:
                _detach(context_token)
            self._response = self._iterator = None

    def _close_response(self) -> None:
        """Close the app's response iterable, once."""
        response, self._response = self._response, None
        close = getattr(response, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                self._escaped(exc)
                raise

    def _escaped(self, exc: Exception) -> None:
        try:
            state = self.state
            if not state.retired:
                state.exceptions.record_once(exc, escaped=True)
                if state.span.is_recording():
                    state.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        except Exception as error:
            report_internal_error("exception", error)

    def end(self) -> None:
        """Last user refresh, route and held-back exceptions; then the span's end (ours) and
        the request state's retirement. Runs once, whoever calls it first."""
        if self._ended:
            return
        self._ended = True
        state = self.state
        try:
            finish_request(state)
        except Exception as exc:
            report_internal_error("request_end", exc)
        if self._ours:
            try:
                self._prepared.maker.end_wsgi(
                    state.span,
                    None,
                    self._metric_attributes,
                    self._started,
                    state.status_code,
                    state.route or None,
                )
            except Exception as exc:
                report_internal_error("span_end", exc)
        state.scope.pop(ENVIRON_KEY, None)
        try:
            if self._ours:
                state.exceptions.uninstall()
            state.retire()
        except Exception as exc:
            report_internal_error("request_end", exc)

    def leave(self) -> None:
        """Undo ``enter``'s contextvar (the request ``adopt_current`` tracked is over)."""
        _reset_state(self._state_token)


def _inject_response_headers(span: trace.Span, headers: Any) -> None:
    """The global response propagator's headers (``traceresponse``), as contrib's WSGI
    middleware adds them to the response's."""
    propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
    if propagator is not None:
        try:
            context = trace.set_span_in_context(span, Context())
            propagator.inject(headers, context=context, setter=_RESPONSE_SETTER)
        except Exception as exc:
            report_internal_error("response_propagator", exc, user_code=True)


def call_hook(site: str, hook: Callable[..., Any], *args: Any) -> None:
    """Call an app's hook; one that raises is logged once and counted, never fails the request."""
    try:
        hook(*args)
    except Exception as exc:
        report_internal_error(site, exc, user_code=True)


def _flask_response_hook(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Contrib's Flask ``response_hook(span, status, response_headers)`` as the door calls it."""

    def response_hook(span: trace.Span, environ: Environ, status: str, headers: Any) -> None:
        hook(span, status, headers)

    return response_hook


def _excluded(prepared: WSGIPrepared, environ: Environ) -> bool:
    """Whether our ``excluded_urls`` or one of OpenTelemetry's variables exclude the request."""
    if not (prepared.config.excluded_urls or prepared.maker.excluded):
        return False
    url = request_uri(environ)
    return prepared.config.is_excluded(url) or prepared.maker.is_excluded(url)


def _detach(token: Any) -> None:
    try:
        otel_context.detach(token)
    except Exception as exc:  # the API's own swallows its errors; a patched one may not
        report_internal_error("context", exc)


def _reset_state(token: Any) -> None:
    try:
        _current.reset(token)
    except (ValueError, TypeError, RuntimeError):  # a token of another context: clear it
        _current.set(None)


def _no_start_response(*args: Any) -> Any:
    """The ``start_response`` of a request ``adopt_current`` tracks: the app's layer has its own."""
    raise RuntimeError("not a WSGI call")

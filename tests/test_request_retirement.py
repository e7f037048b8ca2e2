"""When a request is over, what it leaves behind is small: copies of its context hold no user,
scope or span, the span keeps no ledger, and a task the request started still behaves.

Copies of the request's context outlive it (uvicorn's keep-alive timer is scheduled while the
response is sent; tasks the handler starts run on). Holding the request's objects there kept
them alive long enough to reach the garbage collector's older generations under load.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

from opentelemetry import trace

import otel_user_tracking as out
from otel_user_tracking.request.state import current_request

from ._apps import new_tracing
from ._asgi import drive, http_scope


class _User:
    identity = "user-42"
    display_name = "Jane"
    email = "jane@example.com"
    is_authenticated = True


def test_a_context_copied_during_the_request_does_not_keep_its_user_or_span_alive() -> None:
    tracing = new_tracing()
    copies: list[contextvars.Context] = []
    refs: list[weakref.ref[Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        user = _User()
        scope["user"] = user
        refs.append(weakref.ref(user))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        copies.append(contextvars.copy_context())  # as a loop callback scheduled now would

    middleware = out.UserTrackingMiddleware(app, tracer_provider=tracing.provider)
    scope = http_scope("/me")
    asyncio.run(drive(middleware, scope))
    [span] = tracing.server_spans()
    assert span.attributes["user.id"] == "user-42"
    span_ref = weakref.ref(span)
    del span, scope
    tracing.exporter.clear()
    gc.collect()
    assert copies, "the app ran"
    assert refs[0]() is None, "the user object outlived its request in a copied context"
    assert span_ref() is None, "the span outlived its export in a copied context"


def test_the_ended_span_gets_its_own_record_exception_back() -> None:
    """Contexts copied during the request hold the live span after it ended; it no longer holds
    the request's exception ledger (and its lists) then."""
    tracing = new_tracing()
    live: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        live.append(trace.get_current_span())
        out.capture_exception(ValueError("handled"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(drive(out.UserTrackingMiddleware(app, tracer_provider=tracing.provider), http_scope("/")))
    [span] = tracing.server_spans()
    assert [event.name for event in span.events] == ["exception"]
    assert not live[0].is_recording()
    assert "record_exception" not in vars(live[0])
    assert live[0].record_exception.__func__ is type(live[0]).record_exception


def test_a_task_the_request_started_runs_on_after_it_harmlessly() -> None:
    """After the request: child spans still carry the user id; track() and set_user() do nothing
    (the server span has ended) and raise nothing (internal errors raise under the tests)."""
    tracing = new_tracing()
    tracer = tracing.provider.get_tracer("late")
    released: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["user"] = _User()
        go = asyncio.Event()
        released.append(go)

        async def later() -> None:
            await go.wait()
            out.track("LATE_EVENT")
            out.set_user(id="someone-else")
            out.capture_exception(RuntimeError("late"))
            with tracer.start_as_current_span("late-work"):
                pass

        tasks.append(asyncio.get_running_loop().create_task(later()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        await drive(out.UserTrackingMiddleware(app, tracer_provider=tracing.provider), http_scope("/me"))
        assert tracing.server_spans(), "the request is over"
        released[0].set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    [server] = tracing.server_spans()
    [late] = [span for span in tracing.spans() if span.name == "late-work"]
    assert late.attributes["user.id"] == "user-42"
    assert server.attributes["user.id"] == "user-42"
    assert not server.events


def test_what_the_server_schedules_at_the_last_body_message_does_not_hold_the_request() -> None:
    """uvicorn schedules its keep-alive timer, with a copy of the current context, while it
    sends the last body message; that copy sees neither our span nor the request's state.
    Up to that message the span is current for the layers outside, as before."""
    tracing = new_tracing()
    live: list[Any] = []
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        live.append(trace.get_current_span())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await send({"type": "http.response.body", "body": b"k"})

    async def server_send(message: dict[str, Any]) -> None:
        copy = contextvars.copy_context()  # as loop.call_later() does
        seen[f"{message['type']}:{message.get('more_body', False)}"] = (
            copy.run(trace.get_current_span),
            copy.run(current_request),
        )

    middleware = out.UserTrackingMiddleware(app, tracer_provider=tracing.provider)
    asyncio.run(middleware(http_scope("/"), _no_body, server_send))
    [span] = tracing.server_spans()
    assert span.name == "GET /" and span.status.is_ok
    start_span, start_state = seen["http.response.start:False"]
    assert start_span is live[0] and start_state is not None
    assert seen["http.response.body:True"][0] is live[0]
    last_span, last_state = seen["http.response.body:False"]
    assert last_span is not live[0] and not last_span.get_span_context().is_valid
    assert last_state is None


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}

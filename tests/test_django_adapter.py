"""The Django adapter's pure parts: where our middleware goes, which user it reads (never a lazy one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.utils.functional import SimpleLazyObject

from otel_user_tracking.frameworks.django import (
    ASYNC_MIDDLEWARE,
    CONTRIB_MIDDLEWARE,
    SYNC_MIDDLEWARE,
    loaded_user,
    placed_middleware,
)

AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


@pytest.mark.parametrize(
    ("given", "is_async", "placed", "contrib"),
    [
        ([AUTH], False, [SYNC_MIDDLEWARE, AUTH], False),
        ((AUTH,), True, [ASYNC_MIDDLEWARE, AUTH], False),
        ([CONTRIB_MIDDLEWARE, AUTH], True, [CONTRIB_MIDDLEWARE, ASYNC_MIDDLEWARE, AUTH], True),
        ([AUTH, SYNC_MIDDLEWARE], False, [AUTH, SYNC_MIDDLEWARE], False),
    ],
    ids=["first", "first-async", "inside-contrib", "where-the-app-put-it"],
)
def test_our_middleware_goes_first_or_right_inside_contribs(
    given: Any, is_async: bool, placed: list[str], contrib: bool
) -> None:
    """Ours leads the chain, or follows contrib's (whose span it then enriches), never twice."""
    assert placed_middleware(given, is_async) == (placed, contrib)


def test_a_user_the_request_never_loaded_is_never_loaded() -> None:
    """An unevaluated ``request.user`` stays unevaluated: no loader call, so no query and no error."""
    calls: list[str] = []

    def load() -> Any:
        calls.append("load")
        raise ConnectionError("database down")

    request = SimpleNamespace(user=SimpleLazyObject(load))
    assert loaded_user(request) is None
    assert calls == []


def test_a_user_the_request_loaded_is_read() -> None:
    """A lazy user the view evaluated, or an ``auser()`` result, is read; an anonymous one is not."""
    user = SimpleNamespace(is_authenticated=True, id=7, username="jane")
    lazy = SimpleLazyObject(lambda: user)
    assert lazy.is_authenticated  # the view read it
    assert loaded_user(SimpleNamespace(user=lazy)) is user
    assert loaded_user(SimpleNamespace(_acached_user=user)) is user
    anonymous = SimpleLazyObject(lambda: SimpleNamespace(is_authenticated=False, id=None))
    assert not anonymous.is_authenticated
    assert loaded_user(SimpleNamespace(user=anonymous)) is None


def test_uninstrument_gives_django_its_own_handlers_back() -> None:
    """Instrumenting patches Django's handlers and exception response; uninstrumenting restores each."""
    from django.core.handlers import exception
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.base import BaseHandler
    from django.core.handlers.wsgi import WSGIHandler
    from opentelemetry.sdk.trace import TracerProvider

    from otel_user_tracking import UserTrackingInstrumentor

    places = [
        (ASGIHandler, "__call__"),
        (WSGIHandler, "__call__"),
        (BaseHandler, "load_middleware"),
        (BaseHandler, "process_exception_by_middleware"),
        (exception, "response_for_exception"),
    ]
    originals = [getattr(owner, name) for owner, name in places]
    instrumentor = UserTrackingInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), analytics=False)
    try:
        patched = [getattr(owner, name) for owner, name in places]
        assert [getattr(p, "__wrapped__", None) for p in patched] == originals
    finally:
        instrumentor.uninstrument()
    assert [getattr(owner, name) for owner, name in places] == originals

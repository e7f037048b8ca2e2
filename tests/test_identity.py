"""Finding the user: set_user, resolver, Starlette auth, request.state.user, child spans."""

from __future__ import annotations

import uuid
from typing import Any, Optional

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import otel_user_tracking as out
from otel_user_tracking import testing
from otel_user_tracking.request.identity import UserInfo, user_from_object

from ._apps import bearer, fastapi_app, get, instrumented, new_tracing


class EmailUser(SimpleUser):
    def __init__(self, username: str, email: str, identity: str) -> None:
        super().__init__(username)
        self.email = email
        self._identity = identity

    @property
    def identity(self) -> str:
        return self._identity


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> Optional[tuple[AuthCredentials, BaseUser]]:
        if conn.headers.get("authorization") != "Bearer tok-ann":
            return None
        return AuthCredentials(["authenticated"]), EmailUser("ann", "ann@example.com", "user-1")


def _starlette_auth_app() -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    return Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(AuthenticationMiddleware, backend=TokenBackend())],
    )


def test_set_user_in_a_fastapi_login_dependency_tags_the_server_span() -> None:
    """out.set_user() in a FastAPI dependency tags the server span, even under a child span."""
    tracing = new_tracing()
    with instrumented(tracing):
        get(fastapi_app(tracing), "/me", headers=bearer("tok-bob"))
        get(fastapi_app(tracing), "/public")
    me = tracing.server_span("/me").attributes
    assert (me["user.id"], me["user.name"], me["user.email"]) == ("u-7", "Bob", "bob@example.org")
    assert "user.roles" not in me  # empty roles export nothing
    assert not any(key.startswith("user.") for key in tracing.server_span("/public").attributes)


def test_child_spans_get_the_user_id_unless_disabled() -> None:
    """Spans started during the request after login carry user.id; child_spans=False turns it off."""
    for enabled in (True, False):
        tracing = new_tracing()
        with instrumented(tracing, child_spans=enabled):
            get(fastapi_app(tracing), "/me", headers=bearer("tok-jane"))
        [child] = [span for span in tracing.spans() if span.name == "load-profile"]
        assert (child.attributes.get("user.id") == "42") is enabled


def test_starlette_authentication_middleware_user_is_found() -> None:
    """scope["user"] from AuthenticationMiddleware supplies identity, display_name and email."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = _starlette_auth_app()
        assert get(app, "/whoami", headers=bearer("tok-ann")).json() == {"user": "ann"}
        assert get(app, "/whoami").json() == {"user": ""}
    spans = tracing.server_spans()
    tagged = [span for span in spans if "user.id" in span.attributes]
    assert len(spans) == 2 and len(tagged) == 1
    attributes = tagged[0].attributes
    assert (attributes["user.id"], attributes["user.name"], attributes["user.email"]) == (
        "user-1",
        "ann",
        "ann@example.com",
    )


def test_resolver_wins_over_scope_user_and_set_user_wins_over_resolver() -> None:
    """Resolution order: set_user(), then user_resolver(scope), then scope["user"]."""
    tracing = new_tracing()
    with instrumented(tracing, user_resolver=lambda scope: {"id": "from-resolver"}):
        app = fastapi_app(tracing)
        get(app, "/public")
        get(app, "/me", headers=bearer("tok-jane"))
    assert tracing.server_span("/public").attributes["user.id"] == "from-resolver"
    assert tracing.server_span("/me").attributes["user.id"] == "42"


@pytest.mark.parametrize("as_mapping", [False, True], ids=["object", "mapping"])
def test_request_state_user_set_inside_the_handler_is_seen(as_mapping: bool) -> None:
    """request.state.user, set by the handler itself (object or mapping), tags the span."""
    tracing = new_tracing()

    class User:
        id = 7
        username = "seven"
        email = "seven@example.com"
        is_authenticated = True

    with instrumented(tracing):
        app = fastapi_app(tracing)

        @app.get("/state")
        def state(request: Request) -> dict[str, bool]:
            request.state.user = {"id": 7, "username": "seven"} if as_mapping else User()
            return {"ok": True}

        get(app, "/state")
    attributes = tracing.server_span("/state").attributes
    assert attributes["user.id"] == "7"
    assert attributes["user.name"] == "seven"


def test_unauthenticated_users_are_skipped() -> None:
    """A user object whose is_authenticated is False is not a user."""

    class Anonymous:
        is_authenticated = False
        id = "anon"

    assert user_from_object(Anonymous()) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, "42"), (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"), (None, None), (True, None)],
)
def test_ids_of_any_type_become_strings(value: Any, expected: Optional[str]) -> None:
    """Ints and UUIDs become strings; None and booleans are no id."""
    assert UserInfo.from_values(id=value).id == expected


def test_set_user_outside_a_request_does_nothing() -> None:
    """set_user(), track() and capture_exception() outside a request neither raise nor leak."""
    out.set_user(id=1)
    out.capture_exception(RuntimeError("x"))
    out.track("OUTSIDE")
    assert out.internal_error_counts() == {} or "set_user" not in out.internal_error_counts()


class AbstractIdentityUser(BaseUser):
    """Starlette's SimpleUser before 0.36 or so: ``identity`` left to BaseUser, which raises."""

    def __init__(self, username: str) -> None:
        self.username = username

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username


@pytest.mark.parametrize("user_class", [SimpleUser, AbstractIdentityUser])
def test_starlette_simple_user_is_identified_by_its_username_without_an_error(
    user_class: type[BaseUser], caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette's SimpleUser, whose identity may raise NotImplementedError, gets its username as
    user.id, with no internal error counted or logged."""

    class SimpleBackend(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> Optional[tuple[AuthCredentials, BaseUser]]:
            return AuthCredentials(["authenticated"]), user_class("ann")  # type: ignore[call-arg]

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    tracing = new_tracing()
    testing.reset()
    with instrumented(tracing):
        app = Starlette(
            routes=[Route("/whoami", whoami)],
            middleware=[Middleware(AuthenticationMiddleware, backend=SimpleBackend())],
        )
        assert get(app, "/whoami").json() == {"user": "ann"}
    attributes = tracing.server_span("/whoami").attributes
    assert (attributes["user.id"], attributes["user.name"]) == ("ann", "ann")
    assert out.internal_error_counts() == {}
    assert "otel_user_tracking" not in caplog.text

"""FastAPI's dependency user: the auth dependency's value tags the span with no set_user() call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import pytest
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.security import OAuth2PasswordBearer

import otel_user_tracking as out
from otel_user_tracking.config import Config
from otel_user_tracking.env import ENV_USER_DEPENDENCY, config_from_env

from ._apps import bearer, get, instrumented, new_tracing
from ._versions import needs_fastapi_annotated


@dataclass
class Member:
    id: int
    username: str
    email: str
    is_active: bool = True


MEMBERS = {"tok-jane": Member(42, "jane", "jane@example.com"), "tok-bob": Member(7, "bob", "bob@example.org")}
oauth2 = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)


def get_current_user(token: Optional[str] = Depends(oauth2)) -> Member:
    member = MEMBERS.get(token or "")
    if member is None:
        raise HTTPException(401, "not authenticated")
    return member


CurrentUser = Annotated[Member, Depends(get_current_user)]


def get_current_active_user(user: Member = Depends(get_current_user)) -> Member:
    return user


def load_member(token: Optional[str] = Depends(oauth2)) -> Member:
    """An auth dependency with a name no convention knows: found only when configured."""
    return get_current_user(token)


def load_other_member(user_id: int) -> Member:
    return MEMBERS["tok-bob"]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    def me(user: Member = Depends(get_current_user)) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/annotated")
    def annotated(user: CurrentUser) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/secured")
    def secured(user: Member = Security(get_current_active_user, scopes=["me"])) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/configured")
    def configured(user: Member = Depends(load_member)) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/explicit")
    def explicit(user: Member = Depends(get_current_user)) -> dict[str, Any]:
        out.set_user(id="set-explicitly")
        return {"id": user.id}

    @app.get("/profiles/{user_id}")
    def profile(other: Member = Depends(load_other_member)) -> dict[str, Any]:
        return {"id": other.id}

    @app.get("/public")
    def public() -> dict[str, bool]:
        return {"ok": True}

    return app


def _user(tracing: Any, path: str) -> dict[str, Any]:
    attributes = tracing.server_span(path).attributes
    return {key: value for key, value in attributes.items() if key.startswith("user.")}


@pytest.mark.parametrize(
    "path", ["/me", pytest.param("/annotated", marks=needs_fastapi_annotated), "/secured"]
)
def test_the_conventional_auth_dependency_user_tags_the_span(path: str) -> None:
    """Depends(get_current_user), Annotated[..., Depends()] and Security() give user.* with no set_user."""
    tracing = new_tracing()
    with instrumented(tracing):
        assert get(_app(), path, headers=bearer("tok-jane")).status_code == 200
    assert _user(tracing, path) == {"user.id": "42", "user.name": "jane", "user.email": "jane@example.com"}


def test_requests_without_a_user_dependency_or_login_carry_no_user() -> None:
    """A public route, a failed login (401) and a dependency loading another user tag nothing."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = _app()
        assert get(app, "/public").status_code == 200
        assert get(app, "/me").status_code == 401
        assert get(app, "/profiles/7", headers=bearer("tok-jane")).status_code == 200
        assert get(app, "/configured", headers=bearer("tok-jane")).status_code == 200
    for path in ("/public", "/me", "/profiles/7", "/configured"):
        assert _user(tracing, path) == {}, path


@pytest.mark.parametrize("setting", [load_member, f"{__name__}:load_member"], ids=["callable", "name"])
def test_a_configured_user_dependency_is_the_only_one_read(setting: Any) -> None:
    """user_dependency (the function or its module:attribute name) names the dependency; conventions yield."""
    tracing = new_tracing()
    with instrumented(tracing, user_dependency=setting):
        app = _app()
        get(app, "/configured", headers=bearer("tok-bob"))
        get(app, "/me", headers=bearer("tok-jane"))
    assert _user(tracing, "/configured")["user.id"] == "7"
    assert _user(tracing, "/me") == {}


def test_set_user_wins_over_the_dependency_user() -> None:
    """An explicit set_user() in the handler decides the user, whatever the dependency returned."""
    tracing = new_tracing()
    with instrumented(tracing):
        get(_app(), "/explicit", headers=bearer("tok-jane"))
    assert _user(tracing, "/explicit")["user.id"] == "set-explicitly"


def test_a_user_dependency_name_that_cannot_be_found_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A configured name whose attribute is missing logs one error naming the variable; requests go on."""
    tracing = new_tracing()
    missing = f"{__name__}:no_such_function"
    with caplog.at_level(logging.ERROR), instrumented(tracing, user_dependency=missing):
        app = _app()
        assert get(app, "/me", headers=bearer("tok-jane")).status_code == 200
        assert get(app, "/secured", headers=bearer("tok-jane")).status_code == 200
    assert caplog.text.count(ENV_USER_DEPENDENCY) == 1
    assert _user(tracing, "/me") == {}


def test_the_environment_names_the_user_dependency() -> None:
    """OTEL_PYTHON_USER_TRACKING_USER_DEPENDENCY sets user_dependency once its module is found."""
    values = config_from_env({ENV_USER_DEPENDENCY: f" {__name__}:load_member "})
    assert Config(**values).user_dependency == f"{__name__}:load_member"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("get_current_user", "is not a 'module:attribute' name"),
        ("app.deps:", "is not a 'module:attribute' name"),
        ("no_such_package.deps:get_current_user", "module 'no_such_package.deps' cannot be imported"),
        ("tests.no_such_module:get_current_user", "module 'tests.no_such_module' cannot be imported"),
    ],
)
def test_a_bad_user_dependency_variable_stops_the_start_naming_it(value: str, message: str) -> None:
    """A malformed name, or a module that cannot be found, is a ValueError naming the variable and the fix."""
    with pytest.raises(ValueError) as raised:
        config_from_env({ENV_USER_DEPENDENCY: value})
    assert str(raised.value).startswith(f"{ENV_USER_DEPENDENCY}={value!r}")
    assert message in str(raised.value) and "app.deps:get_current_user" in str(raised.value)


def test_a_bad_user_dependency_in_code_is_rejected() -> None:
    """configure(user_dependency=...) accepts a callable or a module:attribute name only."""
    for bad in (42, "not a name"):
        with pytest.raises(ValueError, match="user_dependency"):
            Config(user_dependency=bad)  # type: ignore[arg-type]

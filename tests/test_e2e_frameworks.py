"""Each framework under ``opentelemetry-instrument`` with zero code, logged in through its own auth.

One real server per framework (a module fixture parametrized by framework), the same six
requests each (``tests/_framework_runs.py``): FastAPI with a JWT ``Depends(get_current_user)``
under uvicorn, Litestar with ``JWTAuth`` under ``litestar run``, Quart with quart-auth under
uvicorn. The apps are ``tests/framework_apps/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from ._framework_runs import (
    PAGES,
    FrameworkRun,
    json_login,
    run_framework,
    skip_unless_supported,
    user_attributes,
)

APPS = Path(__file__).parent / "framework_apps"
JANE = {"user.id": "42", "user.name": "jane", "user.email": "jane@example.com"}


def _bearer_from_body(url: str) -> dict[str, str]:
    _, body = json_login(url + "/token", 200)
    return {"Authorization": f"Bearer {json.loads(body)['access_token']}"}


def _bearer_from_header(url: str) -> dict[str, str]:
    headers, _ = json_login(url + "/login", 201)
    return {"Authorization": headers["authorization"]}


def _cookie(url: str) -> dict[str, str]:
    headers, _ = json_login(url + "/login", 200)
    return {"Cookie": headers["set-cookie"].split(";", 1)[0]}


@dataclass(frozen=True)
class Framework:
    """A framework's app and what its run must show."""

    app: str  # file in framework_apps/
    requires: tuple[str, ...]  # modules the framework's extra installs
    login: Callable[[str], dict[str, str]]
    paths: Mapping[str, str]  # page -> path requested
    names: Mapping[str, str]  # page -> span name
    users: Mapping[str, Mapping[str, Any]]  # page -> its user.* attributes
    escaped: Mapping[str, str]  # page -> exception.escaped of its one exception event
    command: Optional[Sequence[str]] = None  # the server's command line (default: uvicorn)


def _paths(login: str, me: str) -> dict[str, str]:
    return {
        "login": login,
        "me": me,
        "book": "/books/7",
        "missing": "/no/such/page",
        "boom": "/boom",
        "handled": "/declined",
    }


def _names(paths: Mapping[str, str], book: str) -> dict[str, str]:
    names = {page: f"GET {path}" for page, path in paths.items()}
    return {**names, "login": f"POST {paths['login']}", "book": f"GET {book}", "missing": "GET"}


FASTAPI_PATHS = _paths("/token", "/users/me")
LITESTAR_PATHS = _paths("/login", "/me")
FRAMEWORKS = {
    "fastapi": Framework(
        app="fastapi_jwt.py",
        requires=("fastapi", "jwt"),
        login=_bearer_from_body,
        paths=FASTAPI_PATHS,
        names=_names(FASTAPI_PATHS, "/books/{pk}"),
        users={"me": JANE, "book": JANE, "boom": JANE, "handled": JANE},
        escaped={"boom": "false", "handled": "false"},  # answered with a 500: escaped=false, as contrib
    ),
    "litestar": Framework(
        app="litestar_jwt.py",
        requires=("litestar", "jwt"),
        login=_bearer_from_header,
        paths=LITESTAR_PATHS,
        names=_names(LITESTAR_PATHS, "/books/{pk}"),
        users={"me": JANE, "book": JANE, "boom": JANE, "handled": JANE},
        escaped={"boom": "false", "handled": "false"},  # Litestar renders its own 500 too
        command=("litestar", "--app", "app:app", "run", "--host", "{host}", "--port", "{port}"),
    ),
    "quart": Framework(
        app="quart_auth_cookie.py",
        requires=("quart", "quart_auth"),
        login=_cookie,
        paths=LITESTAR_PATHS,
        names=_names(LITESTAR_PATHS, "/books/<int:pk>"),
        # quart-auth's user (id only); its own after_request loads it on every page, login's too
        users={page: {"user.id": "42"} for page in PAGES},
        escaped={"boom": "false", "handled": "false"},  # Quart renders its own 500 too
    ),
}


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Framework, FrameworkRun]:
    framework = FRAMEWORKS[request.param]
    skip_unless_supported(request.param, framework.requires)
    result = run_framework(
        tmp_path_factory.mktemp(request.param),
        (APPS / framework.app).read_text(),
        paths=framework.paths,
        login=framework.login,
        command=framework.command,
    )
    return framework, result


def test_one_server_span_per_request_named_by_route_template(run: tuple[Framework, FrameworkRun]) -> None:
    """Each request is one SERVER span named by the framework's route template; a 404 by its method alone."""
    framework, result = run
    statuses = {page: status for page, status in result.statuses.items() if page != "login"}
    assert statuses == {"me": 200, "book": 200, "missing": 404, "boom": 500, "handled": 502}, (
        result.describe()
    )
    assert len(result.server_spans) == len(PAGES), result.describe()
    assert {page: span.name for page, span in result.spans.items()} == framework.names, result.describe()


def test_the_user_of_the_frameworks_own_auth_tags_the_span(run: tuple[Framework, FrameworkRun]) -> None:
    """After a real login, the user the framework's auth loaded is user.* on the span, with no code."""
    framework, result = run
    found = {page: user_attributes(span) for page, span in result.spans.items()}
    assert {page: users for page, users in found.items() if users} == framework.users, result.describe()


def test_unhandled_and_handled_server_errors_are_one_exception_event_each(
    run: tuple[Framework, FrameworkRun],
) -> None:
    """An exception no handler caught (500) and one an app handler rendered (502): one event each."""
    framework, result = run
    for page in PAGES:
        events = result.spans[page].events_named("exception")
        escaped = [str(event.attributes["exception.escaped"]).lower() for event in events]
        assert escaped == ([framework.escaped[page]] if page in framework.escaped else []), result.describe()


def test_the_store_has_one_pageview_per_completed_request(run: tuple[Framework, FrameworkRun]) -> None:
    """Every request answered became one pageview in the store, the logged-in ones carrying the user id."""
    framework, result = run
    pageviews = [row for row in result.rows if row["type"] == "pageview"]
    assert len(pageviews) == len(PAGES), result.rows
    logged_in = {framework.paths[page] for page in framework.users}
    assert {
        row["url_path"] if "url_path" in row else row["path"] for row in pageviews if row["user_id"] == "42"
    } == (logged_in), result.rows
    assert len([row for row in result.rows if row["type"] == "error"]) == 2, result.rows

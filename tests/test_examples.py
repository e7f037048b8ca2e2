"""The example apps do what the README says, in-process and as the README's main command."""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._apps import Tracing, instrumented, new_tracing
from ._framework_runs import skip_unless_supported
from ._uvicorn import VENV_BIN, base_env, free_port

ROOT = Path(__file__).resolve().parent.parent
UA = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = new_tracing()
    with instrumented(tracing):
        yield tracing


def _run(app: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            responses = []
            for method, path, options in calls:
                headers = {**UA, **options.pop("headers", {})}
                responses.append(await client.request(method, path, headers=headers, **options))
            return responses

    return asyncio.run(go())


EXAMPLE_KEY = "example-test-key-5b7e"


def test_fastapi_example_tags_the_logged_in_user_under_its_policy(
    tracing: Tracing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FastAPI example tags its logged-in user with a hashed email and anonymized address; errors too."""
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_HASH_KEY", EXAMPLE_KEY)
    from examples import fastapi_app

    [login] = _run(
        fastapi_app.app, [("POST", "/login", {"json": {"username": "jane", "password": "correct horse"}})]
    )
    token = login.json()["token"]
    auth = {"headers": {"authorization": f"Bearer {token}"}}
    _run(fastapi_app.app, [("GET", "/me", dict(auth)), ("GET", "/boom", dict(auth))])
    me = tracing.server_span("/me").attributes
    assert (me["user.id"], me["user.name"]) == ("user-42", "Jane Roe")
    assert me["user.email"] != "jane@example.com" and len(str(me["user.email"])) == 64  # HMAC-SHA256 hex
    assert me["client.address"] == "198.51.100.0"  # anonymized
    boom = tracing.server_span("/boom")
    assert [event.name for event in boom.events] == ["exception"]
    assert boom.status.status_code.name == "ERROR"


def test_fastapi_example_ships_no_key_and_says_how_to_set_one() -> None:
    """Without OTEL_PYTHON_USER_TRACKING_HASH_KEY the example stops, naming the variable and
    how to make a key; it never falls back to a key printed in its source."""
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import examples.fastapi_app"],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "OTEL_PYTHON_USER_TRACKING_HASH_KEY" in done.stderr and "run_demo.sh" in done.stderr


def test_starlette_example_takes_the_user_from_authentication_middleware(tracing: Tracing) -> None:
    """The Starlette example tags the user its AuthenticationMiddleware found, with route and span events."""
    from examples import starlette_app

    basic = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    _run(
        starlette_app.app,
        [("GET", "/orders/12", {"headers": {"authorization": basic}}), ("GET", "/broken", {})],
    )
    order = tracing.server_span("/orders/12")
    assert (order.attributes["user.id"], order.attributes["user.name"]) == ("user-1", "ann")
    assert order.attributes["http.route"] == "/orders/{order_id}"
    assert [event.name for event in order.events] == ["ORDER_VIEWED"]
    assert [event.name for event in tracing.server_span("/broken").events] == ["exception"]


@pytest.mark.parametrize(
    ("module", "book_route", "user"),
    [
        (
            "litestar_app",
            "/books/{book_id}",
            {
                "user.id": "user-42",
                "user.name": "jane",
                "user.email": "jane@example.com",
                "user.roles": ("admin",),
            },
        ),
        ("quart_app", "/books/<int:book_id>", {"user.id": "user-42"}),
    ],
)
def test_litestar_and_quart_examples_tag_the_logged_in_user_with_no_code(
    tracing: Tracing, module: str, book_route: str, user: dict[str, str]
) -> None:
    """The Litestar and Quart examples: route templates, the user of their own auth, one exception event."""
    skip_unless_supported(module.split("_")[0])
    app = importlib.import_module(f"examples.{module}").app
    credentials = {"json": {"username": "jane", "password": "correct horse"}}
    [login] = _run(app, [("POST", "/login", credentials)])
    auth = {"authorization": login.headers["authorization"]} if "authorization" in login.headers else {}
    cookie = login.headers.get("set-cookie", "").split(";", 1)[0]
    headers = {**auth, **({"cookie": cookie} if cookie else {})}
    _run(
        app,
        [(method, path, {"headers": dict(headers)}) for method, path in (("GET", "/me"), ("GET", "/boom"))],
    )
    _run(app, [("GET", "/books/3", {})])
    me = tracing.server_span("/me")
    assert {key: value for key, value in me.attributes.items() if key.startswith("user.")} == user
    assert tracing.server_span("/books/3").name == f"GET {book_route}"
    assert [event.name for event in tracing.server_span("/boom").events] == ["exception"]


def test_run_demo_serves_traffic_and_prints_the_report(tmp_path: Path) -> None:
    """The README's main command, on a free port, with its own database file."""
    env = base_env(
        {
            "PORT": str(free_port("127.0.0.1")),
            "DEMO_DB": str(tmp_path / "demo.db"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        }
    )
    done = subprocess.run(
        ["bash", "examples/run_demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert "pageviews 14   unique visitors 3   errors 2   custom events 2" in report, report
    assert "/products/{product_id}" in report and "RuntimeError" in report and "CHECKOUT_COMPLETED" in report
    assert "should-never-be-stored" not in (tmp_path / "demo.db").read_bytes().decode("latin-1")

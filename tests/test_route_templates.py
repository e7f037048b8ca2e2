"""Route templates (span name and ``http.route``) on every supported Starlette and FastAPI.

Starlette before 1.7 leaves no route in the scope; these must hold there as on the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Optional

import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ._apps import Tracing, client, instrumented, new_tracing


async def _text(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _starlette_app() -> Starlette:
    shop = [Route("/items/{item_id}", _text), Route("/", _text)]
    sub_app = Starlette(routes=[Route("/reports/{year:int}", _text)])
    return Starlette(
        routes=[
            Route("/users/{user_id}", _text, methods=["GET"]),
            Mount("/shop", routes=shop),
            Mount("/admin", app=sub_app),
        ]
    )


def _fastapi_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    app.include_router(router)
    inner = APIRouter(prefix="/v1")

    @inner.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    outer = APIRouter()
    outer.include_router(inner, prefix="/grp")
    app.include_router(outer, prefix="/ext")  # FastAPI 0.137+ keeps these prefixes off the route
    app.add_route("/plain/{name}", _text)
    app.mount("/legacy", Starlette(routes=[Route("/pages/{slug}", _text)]))
    return app


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = new_tracing()
    with instrumented(tracing):
        yield tracing


def _request(app: object, method: str, path: str) -> int:
    async def go() -> int:
        async with client(app) as c:
            return (await c.request(method, path)).status_code

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("framework", "method", "path", "route"),
    [
        ("starlette", "GET", "/users/7", "/users/{user_id}"),
        ("starlette", "POST", "/users/7", "/users/{user_id}"),  # 405: the partial match
        ("starlette", "GET", "/shop/items/abc", "/shop/items/{item_id}"),
        ("starlette", "GET", "/shop/", "/shop/"),
        ("starlette", "GET", "/admin/reports/2024", "/admin/reports/{year}"),
        ("starlette", "GET", "/nowhere", None),
        ("fastapi", "GET", "/api/orders/3", "/api/orders/{order_id}"),
        ("fastapi", "GET", "/ext/grp/v1/items/3", "/ext/grp/v1/items/{item_id}"),
        ("fastapi", "GET", "/plain/x", "/plain/{name}"),
        ("fastapi", "GET", "/legacy/pages/about", "/legacy/pages/{slug}"),
    ],
)
def test_the_span_carries_the_route_template(
    tracing: Tracing, framework: str, method: str, path: str, route: Optional[str]
) -> None:
    """The server span is named and tagged with the matched template, mount prefixes included."""
    app = _starlette_app() if framework == "starlette" else _fastapi_app()
    _request(app, method, path)
    span = tracing.server_span(path)
    assert span.attributes is not None
    assert span.attributes.get("http.route") == route
    if route is not None:
        assert span.name == f"{method} {route}"


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
@pytest.mark.parametrize(("method", "name"), [("GET", "GET"), ("DELETE", "DELETE"), ("SCAN", "HTTP")])
def test_an_unmatched_request_is_named_by_its_method_alone(
    tracing: Tracing, framework: str, method: str, name: str
) -> None:
    """A 404 no route matched is named as contrib names it (``GET``), not by its raw path."""
    app = _starlette_app() if framework == "starlette" else _fastapi_app()
    assert _request(app, method, "/wp-admin/setup.php") == 404
    span = tracing.server_span("/wp-admin/setup.php")
    assert span.name == name
    assert span.attributes is not None and "http.route" not in span.attributes

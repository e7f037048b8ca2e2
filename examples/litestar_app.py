"""A Litestar app with JWT login, instrumented with no OpenTelemetry code at all.

Run it with Litestar's own CLI or uvicorn, under the OpenTelemetry CLI (repository root)::

    opentelemetry-instrument --traces_exporter console litestar --app examples.litestar_app:app run
    opentelemetry-instrument --traces_exporter console uvicorn examples.litestar_app:app

No ``set_user``, no wrapper: spans are named by Litestar's route templates
(``GET /books/{book_id}``), the user is the one ``JWTAuth``'s ``retrieve_user_handler`` loads
(``scope["user"]``), and a 500 Litestar renders from an exception is one exception event.

Log in with ``curl -i -X POST localhost:8000/login -d '{"username": "jane", "password": "correct horse"}'``
and send the ``Authorization`` header it returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.security.jwt import JWTAuth, Token


@dataclass
class User:
    id: str
    username: str
    email: str
    roles: list[str] = field(default_factory=list)


@dataclass
class Credentials:
    username: str
    password: str


USERS = {
    "jane": User("user-42", "jane", "jane@example.com", ["admin"]),
    "bob": User("user-7", "bob", "bob@example.org", ["customer"]),
}
PASSWORDS = {"jane": "correct horse", "bob": "battery staple"}


async def retrieve_user_handler(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> Optional[User]:
    return USERS.get(token.sub)


jwt_auth = JWTAuth[User](
    retrieve_user_handler=retrieve_user_handler,
    # A real deployment reads a long random secret from its environment.
    token_secret=os.environ.get("LITESTAR_JWT_SECRET", "demo-secret-not-for-production-use"),
    exclude=["/login", "/schema", "/books"],
)


@post("/login")
async def login(data: Credentials) -> Response[Any]:
    if PASSWORDS.get(data.username) != data.password:
        return Response({"error": "wrong username or password"}, status_code=401)
    return jwt_auth.login(identifier=data.username, response_body={"ok": True})


@get("/me")
async def me(request: Request[User, Token, Any]) -> dict[str, str]:
    return {"id": request.user.id, "username": request.user.username}


@get("/books/{book_id:int}")
async def book(book_id: int) -> dict[str, Any]:
    return {"id": book_id, "title": f"Book {book_id}"}


@get("/boom")
async def boom() -> None:
    raise RuntimeError("payment provider timed out")


app = Litestar([login, me, book, boom], on_app_init=[jwt_auth.on_app_init])

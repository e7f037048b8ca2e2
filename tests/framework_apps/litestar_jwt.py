"""Litestar + JWTAuth, served by tests/test_e2e_frameworks.py under the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.security.jwt import JWTAuth, Token

SECRET = "e2e-secret-for-tests-only-0123456789"


@dataclass
class User:
    id: int
    username: str
    email: str


@dataclass
class Credentials:
    username: str
    password: str


USERS = {"jane": User(42, "jane", "jane@example.com")}
PASSWORDS = {"jane": "pw"}


async def retrieve_user_handler(token: Token, connection: ASGIConnection) -> Optional[User]:
    return USERS.get(token.sub)


jwt_auth = JWTAuth[User](
    retrieve_user_handler=retrieve_user_handler, token_secret=SECRET, exclude=["/login", "/schema"]
)


class PaymentDeclined(Exception):
    pass


def declined(request: Request, exc: PaymentDeclined) -> Response:
    return Response({"error": "declined"}, status_code=502)


@post("/login")
async def login(data: Credentials) -> Response[Any]:
    if PASSWORDS.get(data.username) != data.password:
        return Response({"error": "wrong username or password"}, status_code=401)
    return jwt_auth.login(identifier=data.username, response_body={"ok": True})


@get("/me")
async def me(request: Request[User, Token, Any]) -> dict:
    return {"id": request.user.id}


@get("/books/{pk:int}")
async def book(pk: int) -> dict:
    return {"pk": pk}


@get("/boom")
async def boom() -> None:
    raise RuntimeError("unhandled")


@get("/declined")
async def handled() -> None:
    raise PaymentDeclined("card declined")


app = Litestar(
    [login, me, book, boom, handled],
    on_app_init=[jwt_auth.on_app_init],
    exception_handlers={PaymentDeclined: declined},
)

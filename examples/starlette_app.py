"""The same idea on plain Starlette: the user comes from ``AuthenticationMiddleware``.

No ``set_user`` call: the instrumentation reads ``scope["user"]`` (``identity``,
``display_name``, ``email``) once authentication has run.

    opentelemetry-instrument --traces_exporter console uvicorn examples.starlette_app:app
"""

from __future__ import annotations

import base64
import binascii
from typing import Optional

from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import otel_user_tracking as out

ACCOUNTS = {"ann": ("s3cret", "user-1", "ann@example.com"), "max": ("hunter2", "user-2", "max@example.com")}


class ShopUser(SimpleUser):
    def __init__(self, username: str, identity: str, email: str) -> None:
        super().__init__(username)
        self._identity = identity
        self.email = email

    @property
    def identity(self) -> str:
        return self._identity


class BasicAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> Optional[tuple[AuthCredentials, ShopUser]]:
        scheme, _, encoded = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed basic credentials") from None
        account = ACCOUNTS.get(username)
        if account is None or account[0] != password:
            raise AuthenticationError("wrong username or password")
        return AuthCredentials(["authenticated"]), ShopUser(username, account[1], account[2])


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name if request.user.is_authenticated else None})


async def order(request: Request) -> JSONResponse:
    if request.user.is_authenticated:
        out.track("ORDER_VIEWED", meta={"order": request.path_params["order_id"]})
    return JSONResponse({"order": request.path_params["order_id"]})


async def broken(request: Request) -> JSONResponse:
    raise ValueError("inventory service returned garbage")


app = Starlette(
    routes=[Route("/", home), Route("/orders/{order_id:int}", order), Route("/broken", broken)],
    middleware=[Middleware(AuthenticationMiddleware, backend=BasicAuth())],
)

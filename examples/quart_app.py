"""A Quart app with quart-auth login, instrumented with no OpenTelemetry code at all.

Run it under the OpenTelemetry CLI (repository root)::

    opentelemetry-instrument --traces_exporter console uvicorn examples.quart_app:app

No ``set_user``, no wrapper: spans are named by Quart's URL rules (``GET /books/<int:book_id>``),
the user is quart-auth's ``current_user`` once quart-auth has loaded it for the request, and
a 500 Quart renders from an exception is one exception event.

Log in with ``curl -i -X POST localhost:8000/login -H 'content-type: application/json'
-d '{"username": "jane", "password": "correct horse"}'`` and send the cookie it sets.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, request
from quart_auth import AuthUser, QuartAuth, current_user, login_required, login_user

app = Quart(__name__)
# A real deployment reads a long random secret from its environment.
app.secret_key = os.environ.get("QUART_SECRET_KEY", "demo-secret-not-for-production-use")
app.config["QUART_AUTH_COOKIE_SECURE"] = False  # the demo runs over plain http://localhost
QuartAuth(app)

USERS = {"jane": ("user-42", "correct horse"), "bob": ("user-7", "battery staple")}


@app.post("/login")
async def login() -> tuple[dict[str, Any], int]:
    data = await request.get_json()
    user_id, password = USERS.get(str(data.get("username")), ("", None))
    if password is None or password != data.get("password"):
        return {"error": "wrong username or password"}, 401
    login_user(AuthUser(user_id))
    return {"ok": True}, 200


@app.get("/me")
@login_required
async def me() -> dict[str, Any]:
    return {"id": current_user.auth_id}


@app.get("/books/<int:book_id>")
async def book(book_id: int) -> dict[str, Any]:
    return {"id": book_id, "title": f"Book {book_id}"}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("payment provider timed out")

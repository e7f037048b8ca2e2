"""A small shop on FastAPI with login, instrumented with no OpenTelemetry code at all.

Run it under the CLI (from the repository root), with a hash key of your own::

    export OTEL_PYTHON_USER_TRACKING_HASH_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
    opentelemetry-instrument --traces_exporter console uvicorn examples.fastapi_app:app

Everything user-aware comes from one line, ``out.configure(...)``, which states the tag
policy: the user is what the app's auth dependency, ``get_current_user``, returns (a
conventional name; ``OTEL_PYTHON_USER_TRACKING_USER_DEPENDENCY=examples.fastapi_app:get_current_user``
would name any other), with no ``set_user`` call. ``out.track(...)`` records a custom event.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, WebSocket
from pydantic import BaseModel

import otel_user_tracking as out
from otel_user_tracking.policy import HASH_KEY_ENV

# The email is hashed with a keyed HMAC, so the key must be a secret of your own: there is no
# default, since a key printed here would let anyone hash guesses and match them.
# ``bash examples/run_demo.sh`` makes one per run; a real deployment keeps one stable secret.
HASH_KEY = os.environ.get(HASH_KEY_ENV, "")
if not HASH_KEY.strip():
    raise SystemExit(
        f"examples/fastapi_app.py hashes emails and needs a key: set {HASH_KEY_ENV} to a random secret, "
        f"e.g. export {HASH_KEY_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') "
        "(bash examples/run_demo.sh makes one per run)"
    )
out.configure(tag_policy=out.TagPolicy(email="hash", ip="anonymize", hash_key=HASH_KEY))

USERS = {
    "jane": {"id": "user-42", "name": "Jane Roe", "email": "jane@example.com", "roles": ["admin"]},
    "bob": {"id": "user-7", "name": "Bob Doe", "email": "bob@example.org", "roles": ["customer"]},
}
PASSWORDS = {"jane": "correct horse", "bob": "battery staple"}
SESSIONS: dict[str, str] = {}  # bearer token -> username

app = FastAPI(title="otel-user-tracking demo shop")


def get_current_user(authorization: str = Header(default="")) -> dict[str, Any]:
    """The login dependency: the user of the bearer token (it is the request's user, too)."""
    username = SESSIONS.get(authorization.removeprefix("Bearer ").strip())
    if username is None:
        raise HTTPException(401, "login required")
    return USERS[username]


@app.get("/")
def home() -> dict[str, str]:
    return {"shop": "open"}


@app.get("/products/{product_id}")
def product(product_id: int) -> dict[str, Any]:
    return {"id": product_id, "name": f"Product {product_id}", "price": 10 + product_id}


class Credentials(BaseModel):
    username: str
    password: str


@app.post("/login")
def login(credentials: Credentials) -> dict[str, str]:
    if PASSWORDS.get(credentials.username) != credentials.password:
        raise HTTPException(401, "wrong username or password")
    token = secrets.token_urlsafe(16)
    SESSIONS[token] = credentials.username
    return {"token": token}


@app.get("/me")
def me(user: dict[str, Any] = Depends(get_current_user)) -> dict[str, Any]:
    return {"id": user["id"], "name": user["name"]}


@app.post("/checkout")
def checkout(plan: str = "pro", user: dict[str, Any] = Depends(get_current_user)) -> dict[str, bool]:
    out.track("CHECKOUT_COMPLETED", meta={"plan": plan})
    return {"ok": True}


@app.get("/boom")
def boom(user: dict[str, Any] = Depends(get_current_user)) -> None:
    raise RuntimeError("payment provider timed out")


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)

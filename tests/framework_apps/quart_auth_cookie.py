"""Quart + quart-auth (cookie login), served by tests/test_e2e_frameworks.py under the CLI."""

from quart import Quart, request
from quart_auth import AuthUser, QuartAuth, current_user, login_required, login_user

app = Quart(__name__)
app.secret_key = "e2e-secret-for-tests-only-0123456789"
app.config["QUART_AUTH_COOKIE_SECURE"] = False
QuartAuth(app)
USERS = {"jane": ("42", "pw")}


class PaymentDeclined(Exception):
    pass


@app.errorhandler(PaymentDeclined)
async def declined(error):
    return {"error": "declined"}, 502


@app.post("/login")
async def login():
    data = await request.get_json()
    user_id, password = USERS.get(data["username"], (None, None))
    if password is None or password != data["password"]:
        return {"error": "wrong username or password"}, 401
    login_user(AuthUser(user_id))
    return {"ok": True}


@app.get("/me")
@login_required
async def me():
    return {"id": current_user.auth_id}


@app.get("/books/<int:pk>")
@login_required
async def book(pk):
    return {"pk": pk}


@app.get("/boom")
@login_required
async def boom():
    raise RuntimeError("unhandled")


@app.get("/declined")
@login_required
async def handled():
    raise PaymentDeclined("card declined")

"""A Flask shop with a real Flask-Login login, instrumented without a line of code.

No ``set_user`` call and no middleware: under ``opentelemetry-instrument`` every request's
server span (and pageview) carries the Flask-Login user the view loaded, the route template
names it (``GET /books/<int:pk>``), and the 500 an error handler renders is one exception
event and one analytics error.

    pip install "otel-user-tracking[flask]" flask-login gunicorn
    opentelemetry-instrument --traces_exporter console gunicorn -w 2 examples.flask_app:app
    opentelemetry-instrument --traces_exporter console flask --app examples.flask_app run

    curl -c jar -d "username=ann&password=s3cret" localhost:8000/login
    curl -b jar localhost:8000/books/7
"""

from __future__ import annotations

from typing import Any, Optional

from flask import Flask, abort, jsonify, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user

app = Flask(__name__)
app.secret_key = "change-me"  # signs the session cookie that Flask-Login keeps the user id in
login_manager = LoginManager(app)

BOOKS = {7: "Dune", 8: "Emma"}


class Account(UserMixin):
    """A user as Flask-Login knows it; ``id``, ``username``, ``email`` and ``roles`` are read."""

    def __init__(self, id: str, username: str, email: str, password: str, roles: tuple[str, ...]) -> None:
        self.id = id
        self.username = username
        self.email = email
        self.password = password
        self.roles = roles


ACCOUNTS = {
    "ann": Account("user-1", "ann", "ann@example.com", "s3cret", ("reader",)),
    "max": Account("user-2", "max", "max@example.com", "hunter2", ("reader", "admin")),
}


@login_manager.user_loader
def load_user(user_id: str) -> Optional[Account]:
    return next((account for account in ACCOUNTS.values() if account.id == user_id), None)


class PaymentError(Exception):
    """The payment backend refused: the app answers it with a 502 page of its own."""


@app.errorhandler(PaymentError)
def payment_failed(exc: PaymentError) -> tuple[str, int]:
    return "the payment service is unavailable, try again later", 502


@app.post("/login")
def login() -> Any:
    account = ACCOUNTS.get(request.form.get("username", ""))
    if account is None or account.password != request.form.get("password"):
        abort(401)
    login_user(account)
    return jsonify(ok=True)


@app.post("/logout")
def logout() -> Any:
    logout_user()
    return jsonify(ok=True)


@app.get("/books/<int:pk>")
def book(pk: int) -> Any:
    if pk not in BOOKS:
        abort(404)
    reader = current_user.username if current_user.is_authenticated else None
    return jsonify(title=BOOKS[pk], reader=reader)


@app.get("/me")
@login_required
def me() -> Any:
    return jsonify(id=current_user.id, email=current_user.email)


@app.post("/checkout")
@login_required
def checkout() -> Any:
    raise PaymentError("card declined by the gateway")


@app.get("/about")
def about() -> str:
    return "a page that never looks at the user"


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("kaboom")

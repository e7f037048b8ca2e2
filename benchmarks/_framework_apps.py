"""The apps ``bench_frameworks.py`` serves: the same small page in each framework.

Each answers ``GET /users/<id>`` with a short JSON body for a logged-in user (the framework's
own way of knowing the user: ``flask.g.user`` here), so ours has a user to read, as it would
in an app. No instrumentation code: the variants differ only in how ``opentelemetry-instrument``
runs them.
"""

from __future__ import annotations

from typing import Any

from _bench_user import USER
from flask import Flask, g, jsonify

flask_app = Flask(__name__)


@flask_app.before_request
def _logged_in() -> None:
    g.user = USER


@flask_app.get("/users/<int:user_id>")
def _user(user_id: int) -> Any:
    return jsonify(id=user_id, name="Jane Roe")

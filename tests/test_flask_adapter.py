"""The Flask adapter in-process: placement, the user it reads and never loads, undo."""

from __future__ import annotations

import logging
import signal
from typing import Any

import flask
import pytest
from flask import Flask, g
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from otel_user_tracking import TagPolicy, UserTrackingWSGIMiddleware, internal_error_counts

from ._apps import Tracing, instrumented, new_tracing


def get(app: Flask, path: str) -> Any:
    """A request through Flask's test client, its body read (the request ends when it is sent)."""
    return app.test_client().get(path, buffered=True)


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return f"item {item_id}"

    return app


def test_apps_created_before_instrumentation_get_one_span_named_by_route() -> None:
    """An app made before instrument() is covered: one SERVER span, named by its rule."""
    tracing = new_tracing()
    app = _app()
    with instrumented(tracing):
        assert get(app, "/items/3").status_code == 200
    (span,) = tracing.server_spans()
    assert span.name == "GET /items/<int:item_id>"
    assert span.attributes["http.route"] == "/items/<int:item_id>"


def test_uninstrument_restores_flask_and_sigterm() -> None:
    """After uninstrument() Flask's methods and SIGTERM's handler are the originals, and no span is made."""
    call, handler, sigterm = Flask.__call__, Flask.handle_user_exception, signal.getsignal(signal.SIGTERM)
    tracing = new_tracing()
    app = _app()
    with instrumented(tracing):
        assert Flask.__call__ is not call
        assert signal.getsignal(signal.SIGTERM) is not sigterm
    assert (Flask.__call__, Flask.handle_user_exception) == (call, handler)
    assert signal.getsignal(signal.SIGTERM) is sigterm
    get(app, "/items/1")
    assert tracing.server_spans() == []


class FlakyUser:
    """A user whose email lives in a database that is down."""

    id = "u-9"
    username = "grace"
    is_authenticated = True

    @property
    def email(self) -> str:
        raise ConnectionError("database is down")


def test_a_user_that_fails_to_load_a_field_never_fails_the_request(caplog: pytest.LogCaptureFixture) -> None:
    """``g.user`` whose property raises: the request succeeds, readable fields are tagged, one log line."""
    tracing = new_tracing()
    app = _app()

    @app.before_request
    def load_user() -> None:
        g.user = FlakyUser()

    with caplog.at_level(logging.WARNING), instrumented(tracing):
        responses = [get(app, "/items/1").status_code for _ in range(3)]
    assert responses == [200, 200, 200]
    assert [span.attributes.get("user.id") for span in tracing.server_spans()] == ["u-9"] * 3
    assert internal_error_counts().get("user.email", 0) >= 3
    assert len([record for record in caplog.records if "user.email" in record.getMessage()]) == 1


def _spans_of(app: Any, tracing: Tracing, path: str = "/items/1") -> list[Any]:
    with instrumented(tracing):
        assert get(app, path).status_code == 200
    return tracing.server_spans()


def test_a_door_the_app_put_in_itself_keeps_its_options() -> None:
    """``app.wsgi_app = UserTrackingWSGIMiddleware(...)`` is left alone: one span, its policy."""
    tracing = new_tracing()
    app = _app()
    app.wsgi_app = UserTrackingWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, tracer_provider=tracing.provider, tag_policy=TagPolicy(id="drop")
    )

    @app.before_request
    def load_user() -> None:
        g.user = {"id": "u-1", "username": "ann"}

    (span,) = _spans_of(app, tracing)
    assert "user.id" not in span.attributes and span.attributes["user.name"] == "ann"


def test_under_contribs_wsgi_middleware_its_span_is_enriched() -> None:
    """With contrib's WSGI middleware on ``app.wsgi_app`` the door goes inside it: one span, theirs."""
    tracing = new_tracing()
    app = _app()
    app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app, tracer_provider=tracing.provider)  # type: ignore[method-assign]
    (span,) = _spans_of(app, tracing)
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.wsgi"
    assert span.attributes["user_tracking.request_type"] == "http"
    assert span.attributes["http.route"] == "/items/<int:item_id>"
    assert "127.0.0.1" not in repr(dict(span.attributes))


def test_flask_login_user_is_read_only_if_the_app_loaded_it() -> None:
    """Flask-Login's ``current_user`` is read from ``g._login_user``: never loaded by us."""
    from flask_login import LoginManager, UserMixin, current_user

    loads: list[str] = []

    class Account(UserMixin):
        id = "user-5"
        username = "lin"

    tracing = new_tracing()
    app = _app()
    app.secret_key = "test"
    manager = LoginManager(app)
    manager.request_loader(lambda request: loads.append(request.path) or Account())

    @app.get("/me")
    def me() -> str:
        return str(current_user.username)

    with instrumented(tracing):
        client = app.test_client()
        assert client.get("/items/1", buffered=True).status_code == 200
        assert client.get("/me").get_data(as_text=True) == "lin"
    assert loads == ["/me"]
    user_ids = {flask_path(span): span.attributes.get("user.id") for span in tracing.server_spans()}
    assert user_ids == {"/items/1": None, "/me": "user-5"}


def flask_path(span: Any) -> str:
    return str(span.attributes.get("http.target") or span.attributes.get("url.path"))


def test_flask_is_importable_without_the_adapter() -> None:
    """Importing the adapter module patches nothing by itself."""
    import otel_user_tracking.frameworks.flask  # noqa: F401

    assert not hasattr(flask.Flask.__call__, "__wrapped__")


def test_contribs_flask_span_is_enriched_and_our_hooks_go_at_undo() -> None:
    """With contrib's Flask instrumentation on the app, its span is the one span, with our user and
    facts; after uninstrument() our hooks are off the app and its spans carry nothing of ours."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    tracing = new_tracing()
    app = _app()

    @app.before_request
    def load_user() -> None:
        g.user = {"id": "u-3", "username": "kim"}

    FlaskInstrumentor.instrument_app(app, tracer_provider=tracing.provider)
    hooks = len(app.before_request_funcs[None]), len(app.teardown_request_funcs[None])
    try:
        (span,) = _spans_of(app, tracing)
        assert span.instrumentation_scope.name == "opentelemetry.instrumentation.flask"
        assert (span.attributes["user.id"], span.attributes["http.route"]) == ("u-3", "/items/<int:item_id>")
        assert "127.0.0.1" not in repr(dict(span.attributes))
        assert (len(app.before_request_funcs[None]), len(app.teardown_request_funcs[None])) == hooks
        get(app, "/items/2")
        assert "user.id" not in tracing.server_spans()[-1].attributes
    finally:
        FlaskInstrumentor.uninstrument_app(app)

"""End to end: a real uvicorn under the real ``opentelemetry-instrument``, exporting real OTLP/HTTP.

The server listens on 127.0.0.2 and the client connects from 127.0.0.3, so the client's
address can be looked for in the exported bytes without matching the server's own.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ._otlp_receiver import OTLPReceiver, ReceivedSpan
from ._otlp_receiver import describe_spans as _describe
from ._otlp_receiver import span_path as _path
from ._uvicorn import CLIENT_HOST, SERVER_HOST, ServerExited, UvicornServer, request, uvicorn_server

APP = textwrap.dedent(
    """
    from fastapi import Depends, FastAPI, Header, HTTPException

    import otel_user_tracking

    USERS = {
        "demo-token": {
            "id": "user-42",
            "name": "Jane Roe",
            "email": "jane@example.com",
            "roles": ["admin", "editor"],
        },
    }

    app = FastAPI()


    def login(authorization: str = Header(default="")) -> dict:
        user = USERS.get(authorization.removeprefix("Bearer "))
        if user is None:
            raise HTTPException(401, "login required")
        otel_user_tracking.set_user(**user)
        return user


    @app.get("/me")
    def me(user: dict = Depends(login)) -> dict:
        return {"id": user["id"]}


    @app.get("/boom")
    def boom(user: dict = Depends(login)) -> None:
        raise RuntimeError("kaboom")


    @app.get("/public")
    def public() -> dict:
        return {"ok": True}
    """
)
LOGGED_IN = {"Authorization": "Bearer demo-token"}
OTLP_CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
USER_KEYS = ("user.id", "user.name", "user.email", "user.roles")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def _otlp_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_PYTHON_USER_TRACKING_SINKS": "none",
        **extra,
    }


def _server_spans_by_path(spans: list[ReceivedSpan], paths: list[str]) -> dict[str, ReceivedSpan]:
    """The one SERVER span of each path; fails showing every span when that is not so."""
    server = [span for span in spans if span.kind == "SERVER"]
    by_path = {path: [span for span in server if _path(span) == path] for path in paths}
    assert len(server) == len(paths) and all(len(found) == 1 for found in by_path.values()), (
        f"expected one SERVER span for each of {paths}; exported spans:\n{_describe(spans)}"
    )
    return {path: found[0] for path, found in by_path.items()}


def test_receiver_decodes_what_the_sdk_exporter_sends(otlp_receiver: OTLPReceiver) -> None:
    """The receiver decodes gzip OTLP/HTTP from the SDK exporter into plain spans and keeps raw bytes."""
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.traces_endpoint, compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("harness")
    with tracer.start_as_current_span(
        "parent", kind=SpanKind.SERVER, attributes={"roles": ["a", "b"]}
    ) as span:
        with tracer.start_as_current_span("child"):
            pass
        span.add_event("note", {"n": 3})
        span.set_status(StatusCode.ERROR)
    provider.shutdown()

    otlp_receiver.wait_for(lambda r: len(r.spans()) == 2)
    child, parent = otlp_receiver.spans()
    assert (parent.name, parent.kind, parent.status_code) == ("parent", "SERVER", "ERROR")
    assert parent.scope == "harness"
    assert parent.attributes == {"roles": ["a", "b"]}
    assert [(event.name, event.attributes) for event in parent.events] == [("note", {"n": 3})]
    assert (child.kind, child.parent_span_id, child.trace_id) == ("INTERNAL", parent.span_id, parent.trace_id)
    assert parent.parent_span_id == ""
    assert all(b"harness" in body for body in otlp_receiver.raw_bodies())  # gunzipped
    assert otlp_receiver.errors == []


def test_client_and_server_addresses_differ(tmp_path: Path) -> None:
    """A plain uvicorn on 127.0.0.2 sees requests made from 127.0.0.3 as coming from 127.0.0.3."""
    (tmp_path / "echo.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": scope["client"][0].encode()})
            """
        )
    )
    with uvicorn_server("echo:app", cwd=tmp_path, host=SERVER_HOST) as server:
        status, _, body = request("GET", server.url + "/", source_address=CLIENT_HOST)
    assert (status, body) == (200, b"127.0.0.3")


@pytest.mark.parametrize("ip_mode", ["drop", "anonymize"])
def test_cli_exports_user_tagged_server_spans_without_the_client_ip(
    app_dir: Path, otlp_receiver: OTLPReceiver, ip_mode: str
) -> None:
    """Under the CLI, one SERVER span per request carries the policy's user tags over OTLP."""
    env = _otlp_env(
        otlp_receiver, OTEL_PYTHON_USER_TRACKING_EMAIL="mask", OTEL_PYTHON_USER_TRACKING_IP=ip_mode
    )
    paths = ["/me", "/public", "/boom"]
    with uvicorn_server("app:app", cwd=app_dir, env=env, host=SERVER_HOST, instrument=OTLP_CLI) as server:
        statuses = [
            request("GET", server.url + "/me", LOGGED_IN, source_address=CLIENT_HOST)[0],
            request("GET", server.url + "/public", source_address=CLIENT_HOST)[0],
            request("GET", server.url + "/boom", LOGGED_IN, source_address=CLIENT_HOST)[0],
        ]
        otlp_receiver.wait_for(lambda r: len(r.spans(kind="SERVER")) >= len(paths))
    assert statuses == [200, 200, 500], server.stderr

    spans = otlp_receiver.spans()
    by_path = _server_spans_by_path(spans, paths)
    me, public, boom = by_path["/me"], by_path["/public"], by_path["/boom"]
    assert {key: me.attributes.get(key) for key in USER_KEYS} == {
        "user.id": "user-42",
        "user.name": "Jane Roe",
        "user.email": "j***@example.com",
        "user.roles": ["admin", "editor"],
    }, _describe([me])
    assert not [key for key in public.attributes if key.startswith("user.")], _describe([public])

    assert boom.attributes.get("user.id") == "user-42", _describe([boom])
    assert boom.status_code == "ERROR", _describe([boom])
    exceptions = boom.events_named("exception")
    assert len(exceptions) == 1, _describe([boom])
    event = exceptions[0].attributes
    assert str(event.get("exception.type")).endswith("RuntimeError"), event
    assert event.get("exception.message") == "kaboom", event
    assert "Traceback" in event.get("exception.stacktrace", "") and "kaboom" in event["exception.stacktrace"]
    assert str(event.get("exception.escaped")).lower() == "false", event  # answered by a 500, as contrib

    bodies = otlp_receiver.raw_bodies()
    assert bodies and otlp_receiver.errors == []
    assert not [body for body in bodies if b"127.0.0.3" in body], f"client IP exported:\n{_describe(spans)}"
    assert not [body for body in bodies if b"jane@example.com" in body], "unmasked email exported"
    client_addresses = {span.attributes.get("client.address") for span in by_path.values()}
    if ip_mode == "drop":
        assert client_addresses == {None}, _describe(list(by_path.values()))
    else:
        assert client_addresses == {"127.0.0.0"}, _describe(list(by_path.values()))


def test_disabled_instrumentations_turns_user_tracking_off(
    app_dir: Path, otlp_receiver: OTLPReceiver
) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=user_tracking leaves no user tag and no span of ours."""
    env = _otlp_env(otlp_receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="user_tracking")
    with uvicorn_server("app:app", cwd=app_dir, env=env, host=SERVER_HOST, instrument=OTLP_CLI) as server:
        status, _, _ = request("GET", server.url + "/me", LOGGED_IN, source_address=CLIENT_HOST)
        # A server span from someone else (contrib FastAPI, FastAPI's native tracing) shows tracing is on.
        otlp_receiver.wait_for(lambda r: r.spans(kind="SERVER"))
        # SIGINT ends uvicorn through normal interpreter exit, whose handlers flush the SDK.
        server.stop(signal.SIGINT)
    assert status == 200, server.stderr
    spans = otlp_receiver.spans()
    assert not [span for span in spans if span.scope == "otel_user_tracking"], _describe(spans)
    assert not [span for span in spans if any(key in span.attributes for key in USER_KEYS)], _describe(spans)


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """The JSON span objects ConsoleSpanExporter printed, skipping uvicorn's log lines."""
    decoder = json.JSONDecoder()
    spans, position = [], 0
    while (start := stdout.find("{\n", position)) != -1:
        span, position = decoder.raw_decode(stdout, start)
        spans.append(span)
    return spans


def test_console_exporter_works_from_the_package_install_alone(app_dir: Path) -> None:
    """`opentelemetry-instrument --traces_exporter console uvicorn app:app` prints the user-tagged span."""
    # Metrics and logs off only so shutdown does not retry exports to a collector that is not there.
    console = ["--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none"]
    with uvicorn_server("app:app", cwd=app_dir, instrument=console) as server:
        status, _, _ = request("GET", server.url + "/me", LOGGED_IN)
        server.stop(signal.SIGINT)  # the BatchSpanProcessor flushes at interpreter exit
    assert status == 200, server.stderr
    spans = _console_spans(server.stdout)
    server_spans = [span for span in spans if span["kind"] == "SpanKind.SERVER"]
    assert len(server_spans) == 1, server.stdout
    assert server_spans[0]["attributes"].get("user.id") == "user-42", server.stdout


def test_sigterm_flushes_spans_still_buffered(app_dir: Path, otlp_receiver: OTLPReceiver) -> None:
    """Spans waiting in the 5 s batch reach the collector when uvicorn is stopped with SIGTERM."""
    env = _otlp_env(otlp_receiver)
    del env["OTEL_BSP_SCHEDULE_DELAY"]
    server = UvicornServer("app:app", cwd=app_dir, env=env, host=SERVER_HOST, instrument=OTLP_CLI).start()
    try:
        status, _, _ = request("GET", server.url + "/me", LOGGED_IN, source_address=CLIENT_HOST)
    finally:
        server.stop(signal.SIGTERM)
    assert status == 200, server.stderr
    spans = otlp_receiver.spans()
    assert [_path(span) for span in spans if span.kind == "SERVER"] == ["/me"], (
        f"exported after SIGTERM:\n{_describe(spans)}\nstderr:\n{server.stderr}"
    )


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("OTEL_PYTHON_USER_TRACKING_IP", "sometimes", "keep, anonymize, drop"),
        ("OTEL_PYTHON_USER_TRACKING_EMAIL", "encrypt", "keep, hash, mask, drop"),
        ("OTEL_PYTHON_USER_TRACKING_HASH_KEY", "k", "at least 16 bytes"),
    ],
)
def test_bad_environment_value_stops_the_start(
    app_dir: Path, otlp_receiver: OTLPReceiver, variable: str, value: str, allowed: str
) -> None:
    """A bad policy variable fails the start with a message naming it and its allowed values."""
    env = _otlp_env(otlp_receiver, **{variable: value})
    server = UvicornServer("app:app", cwd=app_dir, env=env, host=SERVER_HOST, instrument=OTLP_CLI)
    with pytest.raises(ServerExited) as info:
        server.start()
    assert info.value.returncode != 0
    assert variable in info.value.stderr and allowed in info.value.stderr, info.value.stderr

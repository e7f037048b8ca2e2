"""No raw email, client address or secret in any byte a real run exports or leaves behind.

A real app under the real ``opentelemetry-instrument`` CLI, exporting OTLP/HTTP to a capture
receiver, with the default SQLite store (``./otel-user-tracking.db``) and DEBUG logging to a
file; every non-keep policy mode is on (id hash, name mask, email hash, ip anonymize) and the
proxy it connects from is trusted. A logged-in user's request comes with a known
``X-Forwarded-For`` address and raises an exception whose message holds the user's email and
name, that address and ``password=hunter2`` (``set_user`` gives it an extra field the policy
hashes and one it does not name); another request carries the password in its
query. Then every byte is scanned (``tests/_privacy_scan.py``): the OTLP bodies, the store
and its WAL while the app runs and after it stopped, the report in every format, and the
DEBUG log. uvicorn's own stderr is not scanned: it is the server printing the app's
traceback, not this package's output; its loggers stay out of the DEBUG file for that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import signal
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from otel_user_tracking.__main__ import main as cli

from ._otlp_receiver import OTLPReceiver
from ._privacy_scan import PrivacyScan
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, request

EMAIL = "Jane.Roe@Example.com"
NAME = "Janet Roewright"
USER_ID = "scan-user-4242"
ADDRESS = "198.51.100.77"  # the client, as the trusted proxy (CLIENT_HOST) forwards it
SECRET = "hunter2"
HASH_KEY = "privacy-scan-hash-key-3e1f"
ORG = "org-scan-77310"  # an extra field the policy hashes
NOTE = "vip-scan-note-5521"  # an extra field the policy does not name
FORBIDDEN = {
    "email": EMAIL,
    "name": NAME,
    "user id": USER_ID,
    "address": ADDRESS,
    "secret": SECRET,
    "hashed extra": ORG,
    "unnamed extra": NOTE,
}

APP = textwrap.dedent(
    f"""
    from fastapi import Depends, FastAPI, Header, HTTPException, Request

    import otel_user_tracking as out

    app = FastAPI()


    def login(authorization: str = Header(default="")) -> str:
        if authorization != "Bearer scan":
            raise HTTPException(401, "login required")
        out.set_user(
            id={USER_ID!r}, name={NAME!r}, email={EMAIL!r}, roles=["customer"], org_id={ORG!r}, note={NOTE!r}
        )
        return {USER_ID!r}


    @app.post("/signup")
    def signup(request: Request, user: str = Depends(login)) -> None:
        out.track("SIGNUP_FAILED", meta={{"plan": "pro", "blob": "x" * 10_000}})
        forwarded = request.headers["x-forwarded-for"]
        raise ValueError(
            "(sqlite3.IntegrityError) UNIQUE constraint failed: users.email\\n"
            "[SQL: INSERT INTO users (email, name, password) VALUES (?, ?, ?)]\\n"
            "[parameters: ({EMAIL!r}, {NAME!r}, {SECRET!r})]\\n"
            f"signup of {NAME} <{EMAIL.lower()}> from {{forwarded}} failed: password={SECRET}"
        )


    @app.get("/products")
    def products() -> dict:
        return {{"ok": True}}
    """
)
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "debug_file": {"class": "logging.FileHandler", "formatter": "plain", "level": "DEBUG"},
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
    },
    "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
    "root": {"handlers": ["debug_file"], "level": "DEBUG"},
}
CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
PROXIED = {"X-Forwarded-For": ADDRESS, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}


def _hmac(value: str) -> str:
    return hmac.new(HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _stored_errors(database: Path) -> list[tuple[str, str]]:
    """The store's error rows, read-only while the app writes; [] until the store exists."""
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        try:
            return db.execute(
                "SELECT error_message, error_stacktrace FROM events WHERE type='error'"
            ).fetchall()
        except sqlite3.OperationalError:  # the schema is not created yet
            return []


def _wait_for_error_row(database: Path, timeout: float = 30.0) -> list[tuple[str, str]]:
    """Poll the store file (another process writes it; nothing to wait on but the file)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _stored_errors(database)
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _report(capsys: pytest.CaptureFixture[str], database: Path, *options: str) -> str:
    """``otel-user-tracking report DATABASE ...``, in-process: what it prints."""
    capsys.readouterr()
    assert cli(["report", str(database), "--since", "1h", *options]) in (0, None)
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_leaky_exception_leaves_no_raw_value_in_any_exported_byte(
    tmp_path: Path, otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTLP bodies, store and WAL, report (table, JSON, page) and DEBUG log hold no raw email,
    name, user id, forwarded address, password, hashed or unnamed extra user field; they hold the
    policy forms instead."""
    (tmp_path / "app.py").write_text(APP)
    debug_log = tmp_path / "debug.log"
    config = json.loads(json.dumps(LOG_CONFIG))
    config["handlers"]["debug_file"]["filename"] = str(debug_log)
    (tmp_path / "logging.json").write_text(json.dumps(config))
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.traces_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_PYTHON_LOG_LEVEL": "debug",
        "OTEL_PYTHON_USER_TRACKING_ID": "hash",
        "OTEL_PYTHON_USER_TRACKING_NAME": "mask",
        "OTEL_PYTHON_USER_TRACKING_EMAIL": "hash",
        "OTEL_PYTHON_USER_TRACKING_EXTRA": "org_id=hash",
        "OTEL_PYTHON_USER_TRACKING_IP": "anonymize",
        "OTEL_PYTHON_USER_TRACKING_HASH_KEY": HASH_KEY,
        "OTEL_PYTHON_USER_TRACKING_TRUSTED_PROXIES": f"{CLIENT_HOST}/32",
        "OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL": "0.2",
    }
    database = tmp_path / "otel-user-tracking.db"  # the default store, in the app's directory
    server = UvicornServer(
        "app:app",
        cwd=tmp_path,
        env=env,
        host=SERVER_HOST,
        instrument=CLI,
        uvicorn_args=["--log-config", str(tmp_path / "logging.json")],
    ).start()
    scan = PrivacyScan(FORBIDDEN)
    try:
        signup = request(
            "POST", f"{server.url}/signup", {**PROXIED, "Authorization": "Bearer scan"}, CLIENT_HOST
        )
        products = request("GET", f"{server.url}/products?password={SECRET}&page=2", PROXIED, CLIENT_HOST)
        assert (signup[0], products[0]) == (500, 200), server.stderr
        otlp_receiver.wait_for(
            lambda r: any(s.events_named("exception") for s in r.spans()) and len(r.spans("SERVER")) >= 2,
            timeout=30,  # a loaded 2-core machine
        )
        running_rows = _wait_for_error_row(database)
        scan.add_files("store while running:", tmp_path.glob("otel-user-tracking.db*"))
    finally:
        server.stop(signal.SIGTERM)
    assert running_rows, f"no error event reached the store; stderr:\n{server.stderr}"
    scan.add("OTLP bodies", *otlp_receiver.raw_bodies())
    scan.add_files("store after exit:", tmp_path.glob("otel-user-tracking.db*"))
    page = tmp_path / "report.html"
    scan.add("report table", _report(capsys, database))
    scan.add("report json", _report(capsys, database, "--format", "json"))
    scan.add("report page", _report(capsys, database, "--html", str(page)), page.read_bytes())
    scan.add("DEBUG log", debug_log.read_bytes())
    scan.assert_clean(
        {"OTLP bodies": 1000, "store while running:": 1000, "store after exit:": 1000, "DEBUG log": 200}
    )

    # What is there instead: the policy forms, so the scan above looked at the right text.
    [event] = [event for span in otlp_receiver.spans() for event in span.events_named("exception")]
    message = str(event.attributes["exception.message"])
    assert _hmac(EMAIL.lower()) in message and "J***" in message and "198.51.100.0" in message
    assert "password=REDACTED" in message and "[parameters: REDACTED]" in message
    [(stored_message, stored_stacktrace)] = _stored_errors(database)
    assert stored_message == message and "password=REDACTED" in stored_stacktrace
    spans = otlp_receiver.spans("SERVER")
    assert any(
        "password=REDACTED&page=2" in str(value) for span in spans for value in span.attributes.values()
    )
    assert [span.attributes.get("user.id") for span in spans].count(_hmac(USER_ID)) == 1
    assert [span.attributes.get("user.org_id") for span in spans].count(_hmac(ORG)) == 1
    assert not any("user.note" in span.attributes for span in spans)
    with contextlib.closing(sqlite3.connect(database)) as db:
        extras = [row[0] for row in db.execute("SELECT user_extra FROM events WHERE user_extra IS NOT NULL")]
    assert extras and all(json.loads(extra) == {"org_id": _hmac(ORG)} for extra in extras)
    assert "otel_user_tracking" in debug_log.read_text()  # our logger reached the file (a cut)

"""Load: a real uvicorn under `opentelemetry-instrument`, many users at once, nothing leaks or gets lost.

``LOAD_REQUESTS`` (default 20 000) requests at concurrency ``LOAD_CONCURRENCY`` (64) from 300
users, spread over async and sync handlers, a thread-pool dependency and ``set_user`` under a
child span. Every SERVER span must carry exactly its own user, every request one pageview.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sqlite3
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ._otlp_receiver import OTLPReceiver
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REQUESTS = int(os.environ.get("LOAD_REQUESTS", "20000"))
CONCURRENCY = int(os.environ.get("LOAD_CONCURRENCY", "64"))
USERS = 300
KINDS = ("async", "sync", "dep", "child")
TIME_LIMIT = 150.0
HASH_KEY = "load-test-hash-key-7c1e"

APP = textwrap.dedent(
    """
    import asyncio
    from fastapi import Depends, FastAPI, Request
    from opentelemetry import trace
    import otel_user_tracking as out

    app = FastAPI()
    tracer = trace.get_tracer("load")

    def login_in_thread_pool(request: Request) -> str:
        uid = request.headers["x-user"]
        out.set_user(id=uid, email=f"{uid}@example.com")
        return uid

    @app.get("/async/{uid}")
    async def in_async(uid: str) -> dict:
        await asyncio.sleep(0)
        out.set_user(id=uid, email=f"{uid}@example.com")
        await asyncio.sleep(0)
        return {"uid": uid}

    @app.get("/sync/{uid}")
    def in_sync(uid: str) -> dict:
        out.set_user(id=uid, email=f"{uid}@example.com")
        return {"uid": uid}

    @app.get("/dep/{uid}")
    async def with_dependency(uid: str, user: str = Depends(login_in_thread_pool)) -> dict:
        await asyncio.sleep(0)
        return {"uid": user}

    @app.get("/child/{uid}")
    async def under_child_span(uid: str) -> dict:
        with tracer.start_as_current_span("load-profile"):
            await asyncio.sleep(0)
            out.set_user(id=uid, email=f"{uid}@example.com")
        return {"uid": uid}
    """
)


def _client(host: str, port: int, jobs: list[tuple[str, str]], failures: list[str], deadline: float) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=30, source_address=(CLIENT_HOST, 0))
    for kind, uid in jobs:
        if time.monotonic() > deadline:
            failures.append("time limit")
            return
        try:
            connection.request("GET", f"/{kind}/{uid}?utm_source=load", headers={"x-user": uid})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or f'"{uid}"'.encode() not in body:
                failures.append(f"{kind}/{uid}: {response.status} {body[:80]!r}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{kind}/{uid}: {type(exc).__name__}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30, source_address=(CLIENT_HOST, 0))
    connection.close()


def test_every_span_carries_its_own_user_and_every_request_one_pageview(tmp_path: Path) -> None:
    """Zero failures; one SERVER span per request with its own user; pageviews equal requests, none twice.

    Also the request-side secrets scan: the hash key, raw emails and the client address
    (ip="drop" by default) appear in no span, no stored row and no log line.
    """
    (tmp_path / "app.py").write_text(APP)
    database = tmp_path / "analytics.db"
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BSP_MAX_QUEUE_SIZE": str(4 * REQUESTS),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048",
            "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}",
            "OTEL_PYTHON_USER_TRACKING_EMAIL": "hash",
            "OTEL_PYTHON_USER_TRACKING_HASH_KEY": HASH_KEY,
        }
        cli = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
        server = UvicornServer(
            "app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=cli,
            uvicorn_args=["--no-access-log", "--log-level", "warning"],
        ).start()  # fmt: skip
        jobs = [(KINDS[n % len(KINDS)], f"user-{n % USERS}") for n in range(REQUESTS)]
        failures: list[str] = []
        started = time.monotonic()
        try:
            threads = [
                threading.Thread(
                    target=_client,
                    args=(SERVER_HOST, server.port, jobs[i::CONCURRENCY], failures, started + TIME_LIMIT),
                )
                for i in range(CONCURRENCY)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            server.stop(signal.SIGTERM, timeout=60)
        print(f"load: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s "
              f"({REQUESTS / elapsed:.0f}/s)")  # fmt: skip
        assert failures == [], (failures[:10], server.stderr[-2000:])
        spans = receiver.wait_for(
            lambda r: s if len(s := r.spans("SERVER")) >= REQUESTS else None, timeout=30
        )
    assert len(spans) == REQUESTS
    for span in spans:
        path = str(span.attributes.get("url.path") or span.attributes.get("http.target"))
        assert span.attributes.get("user.id") == path.rsplit("/", 1)[1], (path, span.attributes)
        assert "@example.com" not in repr(span.attributes)
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT span_id, page, user_id FROM events WHERE type = 'pageview'").fetchall()
        everything = repr(db.execute("SELECT * FROM events").fetchall())
    exported = repr([(span.attributes, span.events, span.resource) for span in spans])
    for where, text in (("spans", exported), ("store", everything), ("logs", server.stdout + server.stderr)):
        for forbidden in (HASH_KEY, "@example.com", CLIENT_HOST):
            assert forbidden not in text, f"{forbidden!r} found in {where}"
    assert len(rows) == REQUESTS
    assert max(Counter(row[0] for row in rows).values()) == 1
    assert Counter(row[1] for row in rows) == Counter(
        {f"/{kind}/{{uid}}": REQUESTS // len(KINDS) for kind in KINDS}
    )

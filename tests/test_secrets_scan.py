"""The delivery side leaks no credential and no hash key, whatever the backends answer.

Every sink is configured with a recognisable credential and the policy hashes user ids and
emails with a recognisable key. Traffic goes through while each backend first refuses with
a body that echoes the whole request back (headers included), then fails, then accepts.
Then every byte that left or stayed is scanned: OTLP trace and log bodies, every sink's
requests outside the credential's own header or field, every log record, ``repr()`` of
every public object, the report's output, and the store and JSON-lines files.
(The request side has its own scan in test_load_server.py.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_user_tracking as out
from otel_user_tracking.__main__ import main as cli
from otel_user_tracking.sinks import (
    JSONLinesSink,
    OTLPLogsSink,
    PostHogSink,
    SegmentSink,
    SQLiteSink,
    SwetrixSink,
    WebhookSink,
)

from ._apps import get_all
from ._fault_server import FaultRequest, FaultServer
from ._versions import OTLP_HTTP_EXPORTER_LOGS_ANSWERS

POSTHOG_KEY = "phc_SECRETposthogKey7f3a"
SEGMENT_KEY = "SECRETsegmentWriteKey9b2c"
SWETRIX_PID = "SECRETswx12a"
WEBHOOK_TOKEN = "SECRETwebhookToken4d1e"
OTLP_TOKEN = "SECRETotlpToken8a6f"
TRACES_TOKEN = "SECRETtracesToken3c5b"
HASH_KEY = "SECREThashKey5e0d"
EMAIL = "jane.roe@example.com"
SECRETS = [POSTHOG_KEY, SEGMENT_KEY, SWETRIX_PID, WEBHOOK_TOKEN, OTLP_TOKEN, TRACES_TOKEN, HASH_KEY]
# Each backend refuses with an echo of the request, fails, echoes again, then accepts. The
# trace endpoint is the app's own exporter, not ours (up to SDK 1.41 it logs an answer
# verbatim): it fails without echoing.
SCRIPT = ("400echo", "503", "400echo", "error200")
TRACES_SCRIPT = ("503", "400", "error200")
REQUESTS = 30


def _forms(secret: str) -> list[bytes]:
    """The secret as it could appear in bytes: plain, and base64 (alone or in basic auth)."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(raw + b":"), base64.b64encode(b":" + raw)]


def _leaks(data: bytes) -> list[str]:
    return [secret for secret in SECRETS if any(form in data for form in _forms(secret))]


async def _app(scope: Any, receive: Any, send: Any) -> None:
    number = scope["path"].rsplit("/", 1)[-1]
    out.set_user(id=f"user-{number}", email=EMAIL, name="Jane Roe")
    if number == "3":
        out.track("CHECKOUT", meta={"plan": "pro"})
    if number == "5":
        out.capture_exception(RuntimeError("card declined"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(app: Any, first: int, count: int) -> None:
    paths = [f"/shop/{index}?utm_source=mail" for index in range(first, first + count)]
    headers = {"user-agent": "Mozilla/5.0 Firefox/128.0", "referer": "https://news.example/"}
    responses = get_all(app, paths, headers=headers, peer="198.51.100.7")
    assert [response.status_code for response in responses] == [200] * count


def _without_own_credential(request: FaultRequest, header: str = "", field: str = "") -> bytes:
    """The request's bytes minus the credential's own header line and its own body field."""
    head = b"\r\n".join(
        line
        for line in request.head.split(b"\r\n")
        if not header or not line.lower().startswith(header.encode())
    )
    body = request.body
    if field:
        data = json.loads(body)
        data.pop(field, None)
        body = json.dumps(data).encode()
    return head + b"\r\n\r\n" + body


@pytest.fixture
def servers() -> Iterator[dict[str, FaultServer]]:
    names = ("posthog", "segment", "swetrix", "webhook", "otlp-logs", "traces")
    with contextlib.ExitStack() as stack:
        running = {name: stack.enter_context(FaultServer()) for name in names}
        for server in running.values():
            server.set("ok", *SCRIPT)
        running["traces"].set("ok", *TRACES_SCRIPT)
        yield running


def test_no_credential_or_hash_key_leaves_through_any_exported_byte(
    servers: dict[str, FaultServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No sink credential nor the hash key appears in any body, log, repr, report or stored byte."""
    caplog.set_level(logging.DEBUG)
    store, lines = tmp_path / "store.db", tmp_path / "events.jsonl"
    sinks = [
        PostHogSink(POSTHOG_KEY, url=servers["posthog"].url, timeout=2),
        SegmentSink(SEGMENT_KEY, url=servers["segment"].url, timeout=2),
        SwetrixSink(SWETRIX_PID, url=servers["swetrix"].url + "/log", timeout=2),
        WebhookSink(servers["webhook"].url + "/hook", authorization=f"Bearer {WEBHOOK_TOKEN}", timeout=2),
        OTLPLogsSink(
            OTLPLogExporter(
                endpoint=servers["otlp-logs"].url + "/v1/logs",
                headers={"authorization": f"Bearer {OTLP_TOKEN}"},
                timeout=2,
            )
        ),
        SQLiteSink(store),
        JSONLinesSink(lines),
    ]
    policy = out.TagPolicy(id="hash", email="hash", hash_key=HASH_KEY)
    provider = TracerProvider()
    processor = out.AnalyticsSpanProcessor(
        sinks=sinks, flush_at=10, flush_interval=60.0, max_retries=4, initial_backoff=0.01, max_backoff=0.2
    )
    provider.add_span_processor(processor)
    traces = OTLPSpanExporter(
        endpoint=servers["traces"].url + "/v1/traces",
        headers={"authorization": f"Bearer {TRACES_TOKEN}"},
        timeout=2,
    )
    provider.add_span_processor(BatchSpanProcessor(traces, schedule_delay_millis=50))
    app = out.UserTrackingMiddleware(_app, tracer_provider=provider, tag_policy=policy)
    try:
        for first in range(0, REQUESTS, 6):  # several trace exports: the trace exporter does not retry a 400
            _serve(app, first, 6)
            assert provider.force_flush(30_000)
        assert processor.force_flush(30_000)
        public_objects = [processor, *sinks, policy, out.get_config(), processor.settings, processor.stats()]
        reprs = "\n".join(repr(thing) for thing in public_objects)
        assert all(stats.sent > 0 for stats in processor.stats().values()), processor.stats()
    finally:
        provider.shutdown()

    assert cli(["report", str(store), "--format", "json"]) == 0
    assert cli(["report", str(store), "--html", str(tmp_path / "report.html")]) == 0
    report = capsys.readouterr().out + (tmp_path / "report.html").read_text()

    own = {  # the credential's own place in each backend's requests
        "posthog": {"field": "api_key"},
        "segment": {"header": "authorization:", "field": "writeKey"},
        "swetrix": {"field": "pid"},
        "webhook": {"header": "authorization:"},
        "otlp-logs": {"header": "authorization:"},
        "traces": {"header": "authorization:"},
    }
    exported: dict[str, bytes] = {}
    for name, server in servers.items():
        assert any(request.mode in ("400echo", "400") for request in server.requests), name
        assert any(request.mode in ("ok", "error200") for request in server.requests), name
        for index, request in enumerate(server.requests):
            exported[f"{name} request {index}"] = _without_own_credential(request, **own[name])
    for record in caplog.records:
        if OTLP_HTTP_EXPORTER_LOGS_ANSWERS and record.name.startswith("opentelemetry.exporter.otlp"):
            continue  # that exporter's own verbatim log of the answer, not ours (see _versions)
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        exported[f"log record {record.name}: {record.getMessage()[:80]}"] = text.encode()
    exported["repr of the public objects"] = reprs.encode()
    exported["report output"] = report.encode()
    for path in tmp_path.iterdir():
        if path.is_file():
            exported[f"file {path.name}"] = path.read_bytes()

    assert exported["file events.jsonl"].count(b"\n") >= REQUESTS  # the scan saw real data
    refusals = [r.getMessage() for r in caplog.records if r.name.startswith("otel_user_tracking")]
    assert any("HTTP 400" in message for message in refusals), refusals  # the echoing refusals were logged
    assert any(re.search(rb"user\.id|profileId|distinct_id", data) for data in exported.values())
    leaks = {where: found for where, data in exported.items() if (found := _leaks(data))}
    assert leaks == {}, leaks
    raw_email = EMAIL.encode()
    assert not [where for where, data in exported.items() if raw_email in data and "log record" not in where]

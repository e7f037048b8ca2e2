"""`opentelemetry-instrument` + uvicorn with two HTTP sinks at once: every event reaches both."""

from __future__ import annotations

import signal
from pathlib import Path

from ._http_sink_server import ScriptedHTTPServer
from ._otlp_receiver import OTLPReceiver
from ._uvicorn import UvicornServer, request
from .test_analytics_e2e import APP, BROWSER, CLI


def test_posthog_and_segment_sinks_both_get_every_event(tmp_path: Path) -> None:
    """Under opentelemetry-instrument, PostHog and Segment both get every event by id; no key is logged."""
    (tmp_path / "app.py").write_text(APP)
    with ScriptedHTTPServer() as capture:
        host = capture.url.split("://", 1)[1]
        sinks = f"posthog+http://phc_testkey123@{host},segment+http://seg_writekey@{host}"
        env = {"OTEL_PYTHON_USER_TRACKING_SINKS": sinks}
        server = UvicornServer("app:app", cwd=tmp_path, env=env, instrument=CLI).start()
        try:
            for n in range(4):
                request("GET", f"{server.url}/products/{n}", BROWSER)
            request("POST", f"{server.url}/checkout", {**BROWSER, "Authorization": "Bearer demo"})
            request("GET", f"{server.url}/boom", BROWSER)
        finally:
            server.stop(signal.SIGTERM)
        received = list(capture.received)
    posthog = [event for r in received if r.path == "/batch/" for event in r.json["batch"]]
    segment = [event for r in received if r.path == "/v1/batch" for event in r.json["batch"]]
    # The logged-in checkout is the visitor's first: each backend is told once who it is.
    assert sorted(event["event"] for event in posthog) == sorted(
        ["$pageview"] * 6 + ["CHECKOUT_COMPLETED", "$exception", "$identify"]
    ), server.stderr
    assert sorted(event["type"] for event in segment) == ["identify"] + ["page"] * 6 + ["track"] * 2
    # The same events, by id: PostHog's uuid and Segment's messageId are our event_id.
    assert {event["uuid"] for event in posthog} == {event["messageId"] for event in segment}
    for secret in ("phc_testkey123", "seg_writekey"):
        assert secret not in server.stderr and secret not in server.stdout


def test_otlp_sink_under_the_cli_links_each_event_to_its_exported_trace(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    """SINKS=otlp: events ride the same OTLP endpoint as the traces, with matching trace ids."""
    (tmp_path / "app.py").write_text(APP)
    env = {
        "OTEL_PYTHON_USER_TRACKING_SINKS": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "shop",
    }
    otlp = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
    server = UvicornServer("app:app", cwd=tmp_path, env=env, instrument=otlp).start()
    try:
        for n in range(3):
            request("GET", f"{server.url}/products/{n}", BROWSER)
        request("GET", f"{server.url}/boom", BROWSER)
    finally:
        server.stop(signal.SIGTERM)
    records = otlp_receiver.log_records()
    assert sorted(record.event_name for record in records) == [
        "error",
        "pageview",
        "pageview",
        "pageview",
        "pageview",
    ]
    server_spans = {span.trace_id: span for span in otlp_receiver.spans() if span.kind == "SERVER"}
    assert {record.trace_id for record in records} == set(server_spans), server.stderr

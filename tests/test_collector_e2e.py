"""The example app under opentelemetry-instrument -> the project's Collector config -> Jaeger.

Real processes on loopback, built by ``collector-config/build.sh``: Jaeger v2 with in-memory
storage, two Collectors running ``collector-config/otelcol.yaml`` (the privacy step off, and
on with ``OTELCOL_PRIVACY=on``), and ``examples/fastapi_app.py`` driven by
``examples/demo_requests.py`` from a client address of its own, stopped with SIGTERM. The
assertions ask Jaeger's HTTP query API, the Collector's file export and the app's SQLite store.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._jaeger import (
    GoProcess,
    JaegerQuery,
    every_value,
    exported_log_records,
    otlp_attributes,
    require_binaries,
    serve_demo,
    server_spans,
    tags,
    wait_until,
)
from ._uvicorn import CLIENT_HOST

SERVICE = "demo-shop"
PRIVATE_SERVICE = "demo-shop-private"
# The two users examples/demo_requests.py logs in, as examples/fastapi_app.py knows them.
JANE = {"user.id": "user-42", "user.name": "Jane Roe", "email": "jane@example.com", "role": "admin"}
BOB = {"user.id": "user-7", "user.name": "Bob Doe", "email": "bob@example.org", "role": "customer"}
# Routes that call the login dependency (out.set_user) when requested with a token.
USER_ROUTES = {"GET /me", "POST /checkout", "GET /boom"}
ROUTES = USER_ROUTES | {"GET /", "GET /products/{product_id}", "POST /login", "GET /openapi.json"}


@dataclass
class DemoRun:
    service: str
    requests: int
    store: Path
    analytics_file: Path


@dataclass
class Stack:
    jaeger: JaegerQuery
    off: DemoRun
    on: DemoRun


def run_demo(collector: GoProcess, service: str, tmp: Path) -> DemoRun:
    """The example app under opentelemetry-instrument, exporting to ``collector``; demo traffic."""
    store = tmp / f"{service}.db"
    server = serve_demo(collector, service, f"otlp,sqlite:///{store}", tmp)
    requests = len(re.findall(r'"(?:GET|POST) [^"]*" \d{3}', server.stdout + server.stderr))
    return DemoRun(service, requests, store, Path(collector.env["OTELCOL_ANALYTICS_FILE"]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    jaeger_bin, otelcol_bin = require_binaries()
    tmp = tmp_path_factory.mktemp("collector-e2e")
    with GoProcess.jaeger(jaeger_bin, tmp) as jaeger:
        runs = {}
        for privacy, service in (("off", SERVICE), ("on", PRIVATE_SERVICE)):
            env = {
                "OTELCOL_JAEGER_ENDPOINT": jaeger.endpoint("JAEGER_OTLP_GRPC_ENDPOINT"),
                "OTELCOL_ANALYTICS_FILE": str(tmp / f"analytics-privacy-{privacy}.jsonl"),
                "OTELCOL_PRIVACY": privacy,
            }
            name = f"otelcol-privacy-{privacy}"
            # Stopping the Collector (SIGTERM) drains its batches to Jaeger and the file.
            with GoProcess.collector(otelcol_bin, tmp, "otelcol.yaml", env, name=name) as collector:
                runs[privacy] = run_demo(collector, service, tmp)
        query = JaegerQuery(f"http://{jaeger.endpoint('JAEGER_QUERY_HTTP_ENDPOINT')}")
        for run in runs.values():
            query.wait_for_traces(run.service, run.requests)
        yield Stack(query, runs["off"], runs["on"])


def user_traces(stack: Stack, service: str, user_id: str) -> list[Any]:
    return stack.jaeger.traces(service, tags={"user.id": user_id})


def user_server_span(trace: Any, user_id: str) -> dict[str, Any]:
    [span] = [span for span in server_spans(trace) if tags(span).get("user.id") == user_id]
    return {"name": span["operationName"], **tags(span), "logs": span["logs"]}


def test_jaeger_lists_the_demo_services(stack: Stack) -> None:
    """Both demo runs reached Jaeger through the Collector, one trace per request."""
    assert {SERVICE, PRIVATE_SERVICE} <= set(stack.jaeger.services())
    assert len(stack.jaeger.traces(SERVICE)) == stack.off.requests >= 15


@pytest.mark.parametrize("user", [JANE, BOB], ids=["jane", "bob"])
def test_search_by_user_id_returns_exactly_that_users_requests(stack: Stack, user: dict[str, str]) -> None:
    """Jaeger's tag search ``user.id=<id>`` finds exactly the requests the user made logged in."""
    everything = stack.jaeger.traces(SERVICE)
    expected = {
        t["traceID"] for t in everything if any(tags(s).get("user.id") == user["user.id"] for s in t["spans"])
    }
    found = user_traces(stack, SERVICE, user["user.id"])
    assert {trace["traceID"] for trace in found} == expected
    assert sorted(user_server_span(trace, user["user.id"])["name"] for trace in found) == sorted(USER_ROUTES)


@pytest.mark.parametrize("user", [JANE, BOB], ids=["jane", "bob"])
def test_user_server_spans_carry_the_apps_policy_and_no_raw_client_address(
    stack: Stack, user: dict[str, str]
) -> None:
    """user.* as the example's TagPolicy allows (hashed email, anonymized address); no raw address."""
    for trace in user_traces(stack, SERVICE, user["user.id"]):
        span = user_server_span(trace, user["user.id"])
        assert span["user.name"] == user["user.name"]
        assert re.fullmatch(r"[0-9a-f]{64}", span["user.email"])  # HMAC-SHA256, not the address
        assert user["role"] in span["user.roles"]
        assert span["client.address"] == "127.0.0.0"
    for trace in stack.jaeger.traces(SERVICE) + stack.jaeger.traces(PRIVATE_SERVICE):
        values = set(every_value(trace))
        assert CLIENT_HOST not in values and user["email"] not in values
        assert not any(CLIENT_HOST in value for value in values)


def test_the_request_that_raised_has_exactly_one_exception_event(stack: Stack) -> None:
    """Each user's GET /boom: status error and one ``exception`` event with the app's message."""
    for user in (JANE, BOB):
        [boom] = [
            user_server_span(trace, user["user.id"])
            for trace in user_traces(stack, SERVICE, user["user.id"])
            if user_server_span(trace, user["user.id"])["name"] == "GET /boom"
        ]
        events = [{f["key"]: f["value"] for f in log["fields"]} for log in boom["logs"]]
        exceptions = [event for event in events if event.get("event") == "exception"]
        assert len(exceptions) == 1 and boom["error"] is True
        assert exceptions[0]["exception.type"] == "RuntimeError"
        assert exceptions[0]["exception.message"] == "payment provider timed out"


def test_server_span_names_are_route_templates(stack: Stack) -> None:
    """Span names are ``METHOD /route/{template}``, never a concrete path."""
    names = {span["operationName"] for trace in stack.jaeger.traces(SERVICE) for span in server_spans(trace)}
    assert names == ROUTES


def _store_counts(store: Path) -> tuple[Counter[str], list[str]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_user_tracking",
            "report",
            str(store),
            "--since",
            "1h",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    counts = Counter(pageview=report["pageviews"], error=report["errors"], custom=report["custom_events"])
    return counts, [row["trace_id"] for row in report["error_types"]]


def test_analytics_events_through_the_collector_match_the_store_and_link_to_jaeger(stack: Stack) -> None:
    """The Collector's logs pipeline wrote as many events per type as the SQLite store holds."""
    counts, error_trace_ids = _store_counts(stack.off.store)
    records = exported_log_records(stack.off.analytics_file)
    exported = Counter(otlp_attributes(record)["user_tracking.event.type"] for record in records)
    assert exported == counts and counts["pageview"] > 0 and counts["error"] == 2 and counts["custom"] == 2
    trace_ids = {record["traceId"] for record in records}
    assert all(stack.jaeger.trace(trace_id) is not None for trace_id in trace_ids)
    assert error_trace_ids and set(error_trace_ids) <= trace_ids  # the report's error rows link to Jaeger


def test_collector_privacy_step_deletes_email_and_client_address(stack: Stack) -> None:
    """OTELCOL_PRIVACY=on: Jaeger and the analytics file hold no user.email, no client address."""
    client_keys = {"user.email", "client.address", "net.peer.ip", "network.peer.address"}

    def jane(service: str) -> list[dict[str, Any]]:
        spans = [
            user_server_span(trace, JANE["user.id"]) for trace in user_traces(stack, service, JANE["user.id"])
        ]
        return sorted(spans, key=lambda span: str(span["name"]))

    off, on = jane(SERVICE), jane(PRIVATE_SERVICE)
    assert [span["name"] for span in on] == [span["name"] for span in off] == sorted(USER_ROUTES)
    for before, after in zip(off, on):
        assert {"user.email", "client.address"} <= set(before) and not client_keys & set(after)
        assert (after["user.id"], after["user.name"], after["user.roles"]) == (
            before["user.id"],
            before["user.name"],
            before["user.roles"],
        )
    on_records = [otlp_attributes(r) for r in exported_log_records(stack.on.analytics_file)]
    off_records = [otlp_attributes(r) for r in exported_log_records(stack.off.analytics_file)]
    assert any("user.email" in r and "client.address" in r for r in off_records)
    assert on_records and not any(client_keys & set(r) for r in on_records)
    assert any(r.get("user.id") == JANE["user.id"] for r in on_records)


def test_wait_until_is_bounded() -> None:
    """The helper every wait here goes through gives up after its timeout."""
    with pytest.raises(TimeoutError):
        wait_until(lambda: None, 0.3, "nothing")

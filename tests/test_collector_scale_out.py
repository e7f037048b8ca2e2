"""The scale-out tier on loopback: an agent Collector load-balancing by trace id to two gateways.

``collector-config/otelcol-agent.yaml`` in front of two ``otelcol-gateway.yaml`` Collectors on
different loopback addresses, all real processes, with Jaeger behind the gateways. Each
gateway also gets a ``file`` exporter for its spans (a second ``--config`` the Collector merges
over the project's file) so the test can see which gateway received what, and sends the
analytics events to a file (``OTELCOL_ANALYTICS_EXPORTER=file/analytics``) since no Kafka
broker runs here; the Kafka route is checked by ``validate`` in test_collector_validate.py.
"""

from __future__ import annotations

import functools
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from examples import demo_requests

from ._jaeger import (
    ROOT,
    GoProcess,
    JaegerQuery,
    exported_log_records,
    exported_spans,
    require_binaries,
)
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, request

SERVICE = "demo-shop-scale-out"
GATEWAY_HOSTS = ("127.0.0.11", "127.0.0.12")
EXTRA_REQUESTS = 40  # on top of the demo traffic, so a split across two gateways is certain


@dataclass
class Gateway:
    host: str
    spans: Path
    analytics: Path


@dataclass
class Tier:
    gateways: list[Gateway]
    jaeger: JaegerQuery
    requests: int


def _overlay(tmp: Path, host: str) -> tuple[Path, Path]:
    spans = tmp / f"gateway-{host}-spans.jsonl"
    overlay = tmp / f"gateway-{host}-overlay.yaml"
    overlay.write_text(
        "exporters:\n"
        f"  file/spans:\n    path: {spans}\n    format: json\n"
        "service:\n  pipelines:\n    traces:\n      exporters: [otlp_grpc/jaeger, file/spans]\n"
    )
    return overlay, spans


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    jaeger_bin, otelcol_bin = require_binaries()
    tmp = tmp_path_factory.mktemp("collector-scale-out")
    with GoProcess.jaeger(jaeger_bin, tmp) as jaeger:
        gateways, processes = [], []
        try:
            for host in GATEWAY_HOSTS:
                overlay, spans = _overlay(tmp, host)
                analytics = tmp / f"gateway-{host}-analytics.jsonl"
                env = {
                    "OTELCOL_JAEGER_ENDPOINT": jaeger.endpoint("JAEGER_OTLP_GRPC_ENDPOINT"),
                    "OTELCOL_ANALYTICS_EXPORTER": "file/analytics",
                    "OTELCOL_ANALYTICS_FILE": str(analytics),
                }
                gateway = GoProcess.collector(otelcol_bin, tmp, "otelcol-gateway.yaml", env, host, [overlay])
                processes.append(gateway.start())
                gateways.append(Gateway(host, spans, analytics))
            agent_env = {
                "OTELCOL_GATEWAY_1": processes[0].endpoint("OTELCOL_OTLP_GRPC_ENDPOINT"),
                "OTELCOL_GATEWAY_2": processes[1].endpoint("OTELCOL_OTLP_GRPC_ENDPOINT"),
            }
            with GoProcess.collector(otelcol_bin, tmp, "otelcol-agent.yaml", agent_env) as agent:
                requests = _drive_app(agent, tmp)
        finally:
            # Agent first (the with block), then the gateways: each drains what it holds.
            for process in processes:
                process.stop()
        query = JaegerQuery(f"http://{jaeger.endpoint('JAEGER_QUERY_HTTP_ENDPOINT')}")
        query.wait_for_traces(SERVICE, requests)
        yield Tier(gateways, query, requests)


def _drive_app(agent: GoProcess, tmp: Path) -> int:
    env = {
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{agent.endpoint('OTELCOL_OTLP_HTTP_ENDPOINT')}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_PYTHON_USER_TRACKING_SINKS": "otlp",
        "OTEL_PYTHON_USER_TRACKING_HASH_KEY": "collector-test-key-e2e",  # the example needs one
    }
    instrument = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
    server = UvicornServer(
        "examples.fastapi_app:app", cwd=ROOT, env=env, host=SERVER_HOST, instrument=instrument, log_dir=tmp
    )
    server.start()
    from_client = functools.partial(http.client.HTTPConnection, source_address=(CLIENT_HOST, 0))
    browser = {"User-Agent": demo_requests.BROWSERS[0][0]}
    try:
        with mock.patch("http.client.HTTPConnection", from_client):
            demo_requests.main(server.url)
        for number in range(EXTRA_REQUESTS):
            status, _, _ = request("GET", f"{server.url}/products/{number}", headers=browser)
            assert status == 200
    finally:
        server.stop()
    return 15 + EXTRA_REQUESTS  # the demo's 14 requests, its readiness probe, the extra ones


def test_every_span_of_a_trace_lands_on_one_gateway_and_both_gateways_get_traffic(tier: Tier) -> None:
    """Routing by trace id: no trace is split, and the traces are split across the gateways."""
    owners: dict[str, set[str]] = {}
    for gateway in tier.gateways:
        for span in exported_spans(gateway.spans):
            owners.setdefault(span["traceId"], set()).add(gateway.host)
    assert len(owners) == tier.requests
    assert all(len(hosts) == 1 for hosts in owners.values())
    per_gateway = {host: sum(hosts == {host} for hosts in owners.values()) for host in GATEWAY_HOSTS}
    assert all(count > 0 for count in per_gateway.values()), per_gateway


def test_analytics_events_follow_their_trace_to_the_same_gateway(tier: Tier) -> None:
    """The agent routes log records by trace id too: each event sits with its trace's spans."""
    events = 0
    for gateway in tier.gateways:
        span_traces = {span["traceId"] for span in exported_spans(gateway.spans)}
        records = exported_log_records(gateway.analytics)
        events += len(records)
        assert {record["traceId"] for record in records} <= span_traces
    assert events >= tier.requests - 1  # a pageview, error or custom event per browser request


def test_jaeger_holds_every_trace_from_both_gateways(tier: Tier) -> None:
    """Both gateways export to the same Jaeger: one trace per request, users searchable."""
    assert len(tier.jaeger.traces(SERVICE)) == tier.requests
    assert len(tier.jaeger.traces(SERVICE, tags={"user.id": "user-42"})) == 3

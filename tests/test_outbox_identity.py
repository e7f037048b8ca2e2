"""Sinks that share a name never share outbox rows, counters or metrics: each is keyed by the
identity of its whole configuration, and a backlog of another configuration is never sent."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out
from otel_user_tracking.sinks import PostHogSink, SegmentSink, SwetrixSink
from otel_user_tracking.sinks.webhook import WebhookSink

from ._fault_server import FaultServer
from ._sinks import ScriptedSink, end_request_spans

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "flush_interval": 0.05, "shutdown_timeout": 0.5}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def _processor(provider: TracerProvider, sinks: list[Any], outbox: Path, **options: Any) -> Any:
    processor = out.AnalyticsSpanProcessor(sinks=sinks, durable=outbox, **{**FAST, **options})
    provider.add_span_processor(processor)
    return processor


def _path_and_auth(head: bytes) -> tuple[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    auth = next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("authorization:")), ""
    )
    return lines[0].split(" ")[1], auth


def test_two_webhooks_on_one_host_each_get_every_event_once_with_their_own_credential(
    server: FaultServer, tmp_path: Path
) -> None:
    """Two webhooks on one host (/a and /b, two credentials) through one outbox: each path gets
    every event exactly once, always with its own Authorization, and both have their own stats."""
    provider = TracerProvider()
    sinks = [
        WebhookSink(f"{server.url}/a", authorization="Bearer token-a"),
        WebhookSink(f"{server.url}/b", authorization="Bearer token-b"),
    ]
    processor = _processor(provider, sinks, tmp_path / "outbox.db", flush_at=7)
    try:
        end_request_spans(provider, 60)
        assert processor.force_flush(10_000)
        stats = processor.stats()
    finally:
        provider.shutdown()
    received: dict[str, Counter[str]] = {"/a": Counter(), "/b": Counter()}
    for request in server.requests:
        path, auth = _path_and_auth(request.head)
        assert auth == f"Bearer token-{path[1:]}", (path, auth)
        received[path].update(request.event_ids())
    assert received["/a"] == received["/b"]
    assert len(received["/a"]) == 60 and set(received["/a"].values()) == {1}
    name = sinks[0].name
    assert sorted(stats) == [name, f"{name}#2"] and all(s.sent == 60 for s in stats.values())


def _waiting(outbox: Path) -> int:
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_a_backlog_of_another_credential_is_never_sent_with_this_one(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PostHog project A leaves 10 events in the outbox (backend down); an app with project B on
    the same host and file sends only its own, with B's key, and says A's are waiting; A's
    next start sends A's, with A's key."""
    outbox = tmp_path / "outbox.db"
    sent_with: dict[str, set[str]] = {}

    def run(key: str, count: int) -> bool:
        """A process with PostHog project ``key``: ``count`` events, flushed; shut down."""
        provider = TracerProvider()
        processor = _processor(provider, [PostHogSink(key, url=server.url, timeout=1.0)], outbox)
        before = len(server.requests)
        end_request_spans(provider, count)
        flushed = processor.force_flush(300 if server.default != "ok" else 5000)
        provider.shutdown()
        for request in server.requests[before:]:
            if request.mode == "ok":
                sent_with.setdefault(request.json["api_key"], set()).update(request.event_ids())
        return flushed

    server.set("503")
    run("phc_project_A", 10)
    assert _waiting(outbox) == 10
    server.set("ok")
    caplog.set_level(logging.WARNING, logger="otel_user_tracking")
    assert run("phc_project_B", 5)
    assert list(sent_with) == ["phc_project_B"] and len(sent_with["phc_project_B"]) == 5
    assert _waiting(outbox) == 10  # A's events stay, unsent
    assert any("10 events in the outbox" in record.getMessage() for record in caplog.records)
    assert run("phc_project_A", 0)
    assert len(sent_with["phc_project_A"]) == 10
    assert not sent_with["phc_project_A"] & sent_with["phc_project_B"]
    assert _waiting(outbox) == 0


def test_four_sinks_that_share_a_name_give_four_entries_in_stats_and_metrics(tmp_path: Path) -> None:
    """Four sinks named alike are four entries in stats() and four sinks in the metrics."""
    provider = TracerProvider()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    sinks = [ScriptedSink(name="same") for _ in range(4)]
    processor = out.AnalyticsSpanProcessor(sinks=sinks, meter_provider=meters, **FAST)
    provider.add_span_processor(processor)
    try:
        end_request_spans(provider, 3)
        assert processor.force_flush(5000)
        stats = processor.stats()
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
        meters.shutdown()
    assert sorted(stats) == ["same", "same#2", "same#3", "same#4"]
    assert all(entry.sent == 3 for entry in stats.values())
    points = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "otel_user_tracking.analytics.events"
        for point in metric.data.data_points
    ]
    sent = {
        point.attributes["sink"]: point.value for point in points if point.attributes["outcome"] == "sent"
    }
    assert sent == {"same": 3, "same#2": 3, "same#3": 3, "same#4": 3}


SECRET = "s3cr3t-credential-value"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (lambda: WebhookSink("http://h/a"), lambda: WebhookSink("http://h/b")),
        (lambda: WebhookSink("http://h/a", authorization=SECRET), lambda: WebhookSink("http://h/a")),
        (lambda: PostHogSink(SECRET, url="http://h"), lambda: PostHogSink("phc_other", url="http://h")),
        (lambda: PostHogSink(SECRET, url="http://h"), lambda: PostHogSink(SECRET, url="https://h")),
        (lambda: SegmentSink(SECRET, url="http://h"), lambda: PostHogSink(SECRET, url="http://h")),
        (
            lambda: SwetrixSink("abcdefghijkl", url="http://h/log"),
            lambda: SwetrixSink("abcdefghijkm", url="http://h/log"),
        ),
    ],
    ids=["path", "credential", "key", "scheme", "kind", "project"],
)
def test_a_sinks_identity_follows_its_whole_configuration_and_hides_its_credential(
    one: Any, other: Any
) -> None:
    """Sinks differing in path, credential, scheme or kind have different identities; the same
    configuration always has the same one; none contains the credential."""
    from otel_user_tracking.analytics.sink import sink_identity

    first, again, second = one(), one(), other()
    try:
        assert sink_identity(first) == sink_identity(again) != sink_identity(second)
        assert first.name == again.name
        assert SECRET not in sink_identity(first) and SECRET not in sink_identity(second)
    finally:
        for sink in (first, again, second):
            sink.close()


def test_rows_an_older_version_keyed_by_name_are_reported_and_never_sent(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows keyed by a sink's name (as versions before identities stored them: whose credential
    is unknown) stay in the file, unsent, and the start says how many wait."""
    outbox = tmp_path / "outbox.db"
    sink = PostHogSink("phc_now", url=server.url, timeout=1.0)
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        db.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, "
            "event TEXT NOT NULL, lease_until REAL NOT NULL DEFAULT 0, owner INTEGER NOT NULL DEFAULT 0)"
        )
        db.executemany(
            "INSERT INTO outbox (sink, event) VALUES (?, ?)", [(sink.name, f'["old-{n}"]') for n in range(7)]
        )
        db.commit()
    caplog.set_level(logging.WARNING, logger="otel_user_tracking")
    provider = TracerProvider()
    processor = _processor(provider, [sink], outbox)
    try:
        end_request_spans(provider, 3)
        assert processor.force_flush(5000)
    finally:
        provider.shutdown()
    assert sum(len(request.event_ids()) for request in server.requests) == 3
    assert _waiting(outbox) == 7
    assert any(f"{sink.name}: 7 events in the outbox" in record.getMessage() for record in caplog.records)

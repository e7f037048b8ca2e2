"""A visitor who logs in: one journey with what it did before, one visitor, PostHog's headers honoured."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import otel_user_tracking as out
from otel_user_tracking.request.headers import read_environ_facts, read_facts
from otel_user_tracking.sinks import SQLiteSink
from otel_user_tracking.store.dashboard import build_dashboard, journey
from otel_user_tracking.store.report import build_report

from ._apps import bearer, fastapi_app, get_all, instrumented, instrumented_analytics, new_tracing

UA = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
PERSON, OTHER = "198.51.100.7", "203.0.113.9"
POSTHOG_ID = "0192f0e4-aaaa-7bbb-8ccc-123456789abc"
KEY = "a-test-key-that-is-long-enough"


def test_a_login_links_the_visitors_earlier_pageviews_into_the_users_journey(tmp_path: Path) -> None:
    """3 anonymous pageviews, 3 logged in: the user's journey has all 6; the report counts the person once."""
    database = tmp_path / "analytics.db"
    tracing = new_tracing()
    processor = out.AnalyticsSpanProcessor(sinks=[SQLiteSink(database)], flush_interval=60)
    tracing.provider.add_span_processor(processor)
    try:
        with instrumented(tracing):
            app = fastapi_app(tracing)
            get_all(app, ["/public"] * 3, headers=UA, peer=PERSON)
            get_all(app, ["/me"] * 3, headers={**UA, **bearer("tok-jane")}, peer=PERSON)
            get_all(app, ["/public"] * 2, headers=UA, peer=OTHER)  # someone else, never logged in
        assert processor.force_flush(10_000)
    finally:
        processor.shutdown()
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    with contextlib.closing(sqlite3.connect(database)) as db:
        steps = journey(db, "user", ("42",), int(since.timestamp() * 1_000_000))
        visitors = db.execute("SELECT COUNT(DISTINCT visitor_id) FROM events").fetchone()[0]
        dashboard = build_dashboard(db, since)
    assert [step.page for step in steps] == ["/public"] * 3 + ["/me"] * 3
    assert visitors == 2
    report = build_report(database, since)
    assert (report.pageviews, report.visitors, dashboard.report.visitors) == (8, 2, 2)


def test_posthogs_headers_become_the_session_and_the_frontends_distinct_id() -> None:
    """X-POSTHOG-SESSION-ID is the session id (unless x-session-id is sent); X-POSTHOG-DISTINCT-ID is kept."""
    headers = {
        **UA,
        "x-posthog-session-id": "0192f0e4-0000-7000-8000-000000000001",
        "x-posthog-distinct-id": POSTHOG_ID,
    }
    with instrumented_analytics() as setup:
        app = fastapi_app(setup.tracing)
        get_all(app, ["/public"], headers=headers)
        get_all(app, ["/public"], headers={**headers, "x-session-id": "ours"})
        events = setup.events("pageview")
    assert [(e.session_id, e.posthog_distinct_id) for e in events] == [
        ("0192f0e4-0000-7000-8000-000000000001", POSTHOG_ID),
        ("ours", POSTHOG_ID),
    ]


@pytest.mark.parametrize(
    ("policy", "extra", "expected"),
    [
        (out.TagPolicy(id="hash", hash_key=KEY), {}, out.TagPolicy(id="hash", hash_key=KEY).hash(POSTHOG_ID)),
        (out.TagPolicy(id="drop"), {}, None),
        (out.TagPolicy(), {"dnt": "1"}, None),
    ],
    ids=["hashed like user ids", "dropped like user ids", "none under DNT"],
)
def test_the_frontends_distinct_id_is_under_the_user_id_policy(
    policy: out.TagPolicy, extra: dict[str, str], expected: Any
) -> None:
    """The distinct id may be the raw user id the frontend identified: user.id's policy; DNT drops it."""
    with instrumented_analytics(tag_policy=policy) as setup:
        app = fastapi_app(setup.tracing)
        get_all(app, ["/public"], headers={**UA, "x-posthog-distinct-id": POSTHOG_ID, **extra})
        [event] = setup.events("pageview")
    assert event.posthog_distinct_id == expected
    span = setup.tracing.server_spans()[0]
    assert POSTHOG_ID not in str(dict(span.attributes or {})) or expected == POSTHOG_ID


@pytest.mark.parametrize(
    ("value", "expected"),
    [(POSTHOG_ID, POSTHOG_ID), ("x" * 5000, "x" * 200), ("bad\x01value", None), ("   ", None)],
    ids=["uuid", "cut at 200", "control character", "blank"],
)
def test_both_front_doors_read_posthogs_headers_bounded_and_never_fail(value: str, expected: Any) -> None:
    """ASGI and WSGI read the same capped values; odd bytes give no value rather than an error."""
    raw = value.encode("latin-1")
    asgi = read_facts(
        {"headers": [(b"x-posthog-distinct-id", raw), (b"x-posthog-session-id", raw)]}, "x-session-id"
    )
    wsgi = read_environ_facts(
        {"HTTP_X_POSTHOG_DISTINCT_ID": value, "HTTP_X_POSTHOG_SESSION_ID": value}, "x-session-id"
    )
    assert asgi.posthog_distinct_id == wsgi.posthog_distinct_id == expected
    session = None if expected is None else expected[:128]
    assert asgi.session_id == wsgi.session_id == session
    assert read_facts({"headers": [(b"x-posthog-distinct-id", raw)]}, "").posthog_distinct_id is None

"""The dashboard's numbers, charts, journeys, escaping, server and query plans (no browser here)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import math
import re
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from otel_user_tracking.__main__ import main
from otel_user_tracking.analytics.events import AnalyticsEvent, to_us
from otel_user_tracking.store.dashboard import (
    DashboardServer,
    JourneyView,
    PageOptions,
    UserIdForm,
    Window,
    build_dashboard,
    journey,
    render_page,
    svg,
)
from otel_user_tracking.store.dashboard.journey import JOURNEY_LIMIT
from otel_user_tracking.store.report import build_report
from otel_user_tracking.store.sqlite import schema as store

from ._dashboard import NOW, event, fill, generate, request, running

EVIL = '<script>alert("x")</script><img src=https://evil.example/x.png>'


@pytest.fixture(scope="module")
def events() -> list[AnalyticsEvent]:
    return generate(4_000)


@pytest.fixture(scope="module")
def database(events: list[AnalyticsEvent], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill(tmp_path_factory.mktemp("dash") / "a.db", events)


@pytest.fixture
def db(database: Path) -> Iterator[sqlite3.Connection]:
    connection = store.connect_readonly(database)
    yield connection
    connection.close()


@pytest.mark.parametrize(("days", "hourly", "points"), [(1, True, 25), (2.5, True, 61), (7, False, 8)])
def test_series_points_add_up_to_the_report_totals(
    db: sqlite3.Connection, events: list[AnalyticsEvent], days: float, hourly: bool, points: int
) -> None:
    """Hourly under 3 days, daily beyond; points sum to the report's total, the prior period's to a count."""
    since = NOW - timedelta(days=days)
    dashboard = build_dashboard(db, since, now=NOW)
    series = dashboard.series
    assert dashboard.window.hourly is hourly and len(series.starts_us) == points
    assert sum(series.pageviews) == dashboard.report.pageviews == build_report(db, since).pageviews
    before = [e for e in events if e.type == "pageview" and since - (NOW - since) <= e.timestamp < since]
    assert sum(series.previous_pageviews) == len(before) > 0
    assert series.previous_unique_visitors == len({e.visitor_id for e in before})
    assert series.starts_us[0] == to_us(since) and all(
        start % dashboard.window.bucket_us == 0 for start in series.starts_us[1:]
    )


def test_window_points_line_up_with_the_previous_period() -> None:
    """Point k of the previous period covers the same offset from its start as point k of the window."""
    window = Window.of(NOW - timedelta(hours=5), NOW)
    current, previous = window.bounds(), window.bounds(previous=True)
    assert len(current) == len(previous) == 6
    assert [low - window.span_us for low, _ in current] == [low for low, _ in previous]
    assert current[-1][1] is None and previous[-1][1] == window.since_us


@pytest.mark.parametrize(("days", "name", "points"), [(2, "hour", 49), (90, "day", 91), (730, "2 days", 366)])
def test_long_windows_keep_a_few_hundred_points(days: int, name: str, points: int) -> None:
    """Past 400 days a point spans whole days, so a window of years stays a few hundred queries."""
    window = Window.of(NOW - timedelta(days=days), NOW)
    assert window.point_name == name and len(window.starts()) == points


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * percent / 100) - 1]


def test_request_metrics_equal_an_independent_count(
    db: sqlite3.Connection, events: list[AnalyticsEvent]
) -> None:
    """Status mix, 4xx/5xx per route and nearest-rank p50/p95 (to 0.1 ms) equal a count made in Python."""
    since = NOW - timedelta(days=7)
    dashboard = build_dashboard(db, since, now=NOW)
    window = [e for e in events if e.type == "pageview" and e.timestamp >= since]
    assert {row.value: row.count for row in dashboard.statuses} == {
        str(code): n for code, n in Counter(e.status_code for e in window).items()
    }
    for route in dashboard.routes:
        mine = [e for e in window if e.page == route.page]
        tenths = [round(float(e.duration_ms or 0) * 10) / 10 for e in mine]
        assert route.requests == len(mine)
        assert route.client_errors == sum(400 <= (e.status_code or 0) < 500 for e in mine)
        assert route.server_errors == sum((e.status_code or 0) >= 500 for e in mine)
        assert (route.p50_ms, route.p95_ms) == (_nearest_rank(tenths, 50), _nearest_rank(tenths, 95))
    campaigns = Counter(e.utm_campaign for e in window if e.utm_campaign)
    assert {row.value: row.count for row in dashboard.campaigns} == dict(campaigns)


def test_custom_events_list_their_meta_keys(db: sqlite3.Connection, events: list[AnalyticsEvent]) -> None:
    """Each custom event name shows how many of its events carry each meta key."""
    since = NOW - timedelta(days=7)
    dashboard = build_dashboard(db, since, now=NOW)
    for row in dashboard.custom:
        mine = [e for e in events if e.type == "custom" and e.name == row.name and e.timestamp >= since]
        assert row.count == len(mine)
        assert {key.value: key.count for key in row.meta_keys} == dict(
            Counter(k for e in mine for k in e.meta)
        )


@pytest.mark.parametrize(
    ("kind", "field"), [("user", "user_id"), ("visitor", "visitor_id"), ("session", "session_id")]
)
def test_a_journey_is_that_persons_events_oldest_first(
    db: sqlite3.Connection, events: list[AnalyticsEvent], kind: str, field: str
) -> None:
    """A journey holds exactly the person's pageviews, errors and custom events in the window, in order;
    a user's also holds those of the visitor ids the user's events carry, on the day they carry them."""
    since_us = to_us(NOW - timedelta(days=7))
    value = next(getattr(e, field) for e in events if getattr(e, field))
    steps = journey(db, kind, (value,), since_us)  # type: ignore[arg-type]
    window = [e for e in events if e.ts_us >= since_us]

    def day_visitor(event: AnalyticsEvent) -> tuple[int, object]:
        return event.ts_us // 86_400_000_000, event.visitor_id

    linked = {day_visitor(e) for e in window if kind == "user" and e.user_id == value and e.visitor_id}
    expected = sorted(
        (e.ts_us, e.trace_id) for e in window if getattr(e, field) == value or day_visitor(e) in linked
    )
    expected = expected[-JOURNEY_LIMIT:]  # the latest, as the page shows them
    assert [(step.ts_us, step.trace_id) for step in steps] == expected and len(steps) > 3
    latest = journey(db, kind, (value,), since_us, limit=3)  # type: ignore[arg-type]
    assert [(step.ts_us, step.trace_id) for step in latest] == expected[-3:]


KEY = "a-test-key-that-is-long-enough"


@pytest.mark.parametrize(
    ("env", "typed", "stored", "says"),
    [
        ({}, " user-42 ", ("user-42",), "as the app set them"),
        (
            {"OTEL_PYTHON_USER_TRACKING_ID": "hash", "OTEL_PYTHON_USER_TRACKING_HASH_KEY": KEY},
            "user-42",
            (hmac.new(KEY.encode(), b"user-42", hashlib.sha256).hexdigest(),),
            "hashed with the key",
        ),
        ({"OTEL_PYTHON_USER_TRACKING_ID": "hash"}, "user-42", (), "search by the hash"),
        ({"OTEL_PYTHON_USER_TRACKING_ID": "hash"}, "AB" * 32, ("ab" * 32,), "search by the hash"),
        ({"OTEL_PYTHON_USER_TRACKING_ID": "mask"}, "user-42", ("u***",), "masked"),
        ({"OTEL_PYTHON_USER_TRACKING_ID": "drop"}, "user-42", (), "not stored"),
    ],
)
def test_a_typed_user_id_is_searched_in_its_stored_form(
    env: dict[str, str], typed: str, stored: tuple[str, ...], says: str
) -> None:
    """A typed user id is hashed (keyed HMAC), masked or kept as the policy stores it; the page says which."""
    form = UserIdForm.from_env(env)
    assert form.stored(typed) == stored
    assert says in form.explain()


def test_line_chart_has_axes_units_legend_and_values() -> None:
    """Two series: labelled axes with units, a legend, every point's value; one series: no legend."""
    chart = svg.line_chart(
        "Pageviews",
        [svg.Line("pageviews", [1, 4, 2]), svg.Line("previous period", [0, 1, 1], dashed=True)],
        ["10:00", "11:00", "12:00"],
        "pageviews per hour",
        "hour starting (UTC)",
    )
    assert chart.startswith("<svg") and chart.endswith("</svg>")
    assert "pageviews per hour" in chart and "hour starting (UTC)" in chart and 'class="legend"' in chart
    assert re.findall(r'data-value="(\d+)"', chart) == ["1", "4", "2", "0", "1", "1"]
    assert ">4</text>" in chart  # the y axis reaches the largest value
    single = svg.line_chart("Pageviews", [svg.Line("pageviews", [1, 2])], ["a", "b"], "n", "t")
    assert 'class="legend"' not in single


@pytest.mark.parametrize(
    "chart",
    [
        svg.line_chart("Pageviews", [svg.Line("pageviews", [0, 0])], ["a", "b"], "n", "t"),
        svg.line_chart("Pageviews", [svg.Line("pageviews", [])], [], "n", "t"),
        svg.bar_chart("Status codes", [], "requests"),
    ],
)
def test_empty_charts_say_there_is_no_data_yet(chart: str) -> None:
    """A chart without data is a box saying so, not empty axes."""
    assert 'class="chart empty"' in chart and "No data yet" in chart and "<circle" not in chart


@pytest.mark.parametrize(
    ("maximum", "top", "step"),
    [(0, 1, 1), (3, 3, 1), (14, 15, 5), (99, 100, 20), (450_000, 500_000, 100_000)],
)
def test_axis_ticks_are_whole_round_numbers(maximum: float, top: float, step: float) -> None:
    """The y axis tops out at a round number at or above the data, with at most five whole-number steps."""
    assert svg.axis_scale(maximum) == (top, step)


def test_chart_text_is_escaped() -> None:
    """Labels and series names from the store cannot inject markup into the SVG."""
    chart = svg.bar_chart(EVIL, [(EVIL, 3)], EVIL)
    assert "<script" not in chart and "<img" not in chart and "&lt;script&gt;" in chart


@pytest.fixture
def evil_database(tmp_path: Path) -> Path:
    """A store whose every free-text field holds markup."""
    when = NOW - timedelta(hours=1)
    fields = {"route": EVIL, "referrer": EVIL, "locale": EVIL, "utm_source": EVIL, "utm_campaign": EVIL}
    return fill(
        tmp_path / "evil.db",
        [
            event("pageview", when, 1, status_code=200, duration_ms=1.0, user_id=EVIL, **fields),
            event("error", when, 2, error_type=EVIL, error_message=EVIL, user_id=EVIL, **fields),
            event("custom", when, 3, name=EVIL, meta={EVIL: EVIL}, user_id=EVIL, **fields),
        ],
    )


def test_everything_from_the_store_is_escaped(evil_database: Path) -> None:
    """Markup stored in pages, referrers, errors, event names, meta and ids is shown as text, never run."""
    with contextlib.closing(store.connect_readonly(evil_database)) as db:
        dashboard = build_dashboard(db, NOW - timedelta(days=1), now=NOW)
        steps = journey(db, "user", (EVIL,), dashboard.window.since_us)
    options = PageOptions(live=True, refresh_seconds=60)
    page = render_page(dashboard, options, JourneyView("user", (EVIL,), steps))
    assert len(steps) == 3
    assert "<script" not in page and "<img" not in page and "evil.example" in page
    assert page.count("&lt;script&gt;") >= 10
    assert not re.search(r'(src|href)="https?://evil', page)


def test_an_empty_store_says_there_is_no_data_yet(tmp_path: Path) -> None:
    """Every chart and table of an empty store says there is nothing yet instead of showing empty boxes."""
    fill(tmp_path / "empty.db", [])
    with contextlib.closing(store.connect_readonly(tmp_path / "empty.db")) as db:
        page = render_page(build_dashboard(db, NOW - timedelta(days=7), now=NOW), PageOptions())
    assert page.count('class="chart empty"') == 3
    for what in (
        "No page data yet",
        "No referrer data yet",
        "No errors yet",
        "No custom events yet",
        "No requests yet",
    ):
        assert what in page


def test_the_page_fetches_nothing(db: sqlite3.Connection) -> None:
    """No script, stylesheet, image or font source: a CSP that forbids them and links only to Jaeger."""
    page = render_page(
        build_dashboard(db, NOW - timedelta(days=7), now=NOW), PageOptions(jaeger_url="http://j:16686")
    )
    assert "<script" not in page and " src=" not in page and '<link rel="stylesheet"' not in page
    assert "default-src 'none'" in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all(h == "data:," or h.startswith("http://j:16686/trace/") for h in hrefs)


def _plans(db: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    plans = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            for row in db.execute("EXPLAIN QUERY PLAN " + sql):
                plans.append((row[3], sql))
    return plans


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_every_page_query_uses_an_index(
    database: Path, events: list[AnalyticsEvent], tmp_path: Path, analyzed: bool
) -> None:
    """No page or journey query scans the events table (EXPLAIN QUERY PLAN), with or without ANALYZE."""
    if analyzed:
        database = fill(tmp_path / "analyzed.db", events)
        with contextlib.closing(store.connect(database)) as writer:
            writer.execute("ANALYZE")
    statements: list[str] = []
    with contextlib.closing(store.connect_readonly(database)) as db:
        db.set_trace_callback(statements.append)
        dashboard = build_dashboard(db, NOW - timedelta(days=7), now=NOW)
        for kind in ("user", "visitor", "session"):
            journey(db, kind, ("someone",), dashboard.window.since_us)  # type: ignore[arg-type]
        db.set_trace_callback(None)
        plans = _plans(db, statements)
    assert len(statements) > 20
    scans = [(detail, sql) for detail, sql in plans if re.match(r"SCAN (events|\w+ AS events)\b", detail)]
    assert scans == []
    used = {m for detail, _ in plans for m in re.findall(r"INDEX (events_\w+)", detail)}
    assert {"events_pageviews", "events_requests"} <= used
    for column, index in (("visitor_id", "pageviews"), ("user_id", "requests"), ("session_id", "requests")):
        journey_plans = [detail for detail, sql in plans if f"{column} IN" in sql]
        assert any(f"INDEX events_{index} " in detail for detail in journey_plans), column


@pytest.fixture
def server(database: Path) -> Iterator[DashboardServer]:
    form = UserIdForm.from_env(
        {"OTEL_PYTHON_USER_TRACKING_ID": "hash", "OTEL_PYTHON_USER_TRACKING_HASH_KEY": KEY}
    )
    options = PageOptions(since_text="7d", refresh_seconds=60, live=True, user_ids=form)
    with running(DashboardServer(database, port=0, options=options)) as server:
        yield server


def test_the_server_serves_the_page_with_a_strict_policy(server: DashboardServer) -> None:
    """GET / is the page, refreshing itself, under a CSP that allows no other origin; other paths are 404."""
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert '<meta http-equiv="refresh" content="60">' in page and 'action="/journey"' in page
    assert request(server, "GET", "/favicon.ico")[0] == 404
    assert request(server, "GET", "/?since=yesterday")[0] == 400
    assert request(server, "GET", "/?since=99999999w")[0] == 400


def test_a_searched_user_id_is_looked_up_hashed(server: DashboardServer) -> None:
    """POST /journey hashes the typed id with the policy's key and redirects: no URL holds an id."""
    status, headers, _ = request(
        server, "POST", "/journey", urlencode({"kind": "user", "id": "user-3", "since": "7d"})
    )
    hashed = hmac.new(KEY.encode(), b"user-3", hashlib.sha256).hexdigest()
    location = headers["Location"]
    assert status == 303 and location.startswith("/?since=7d&journey=")
    assert "user-3" not in location and hashed not in location
    status, _, page = request(server, "GET", location)
    assert status == 200 and "user-3" not in page and hashed in page and 'id="journey-empty"' in page


def test_the_server_refuses_other_host_names(server: DashboardServer) -> None:
    """A request naming another host (DNS rebinding) is refused; localhost by its port is served."""
    port = server.server_address[1]
    assert request(server, "GET", "/", host="evil.example:80")[0] == 421
    assert request(server, "GET", "/", host=f"localhost:{port}")[0] == 200


def test_report_html_writes_the_same_numbers_as_json(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report --html FILE`` writes one self-contained page whose totals (sessions, bounce rate and
    visit durations too) are ``report --format json``'s."""
    out = tmp_path / "page.html"
    assert (
        main(["report", str(database), "--since", "2000-01-01", "--format", "json", "--html", str(out)]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    page = out.read_text(encoding="utf-8")
    kpis = dict(re.findall(r'data-kpi="([^"]+)"><b>([^<]+)</b>', page))
    visits = report["sessions"]
    assert kpis == {
        "pageviews": str(report["pageviews"]),
        "unique visitors": str(report["visitors"]),
        "sessions": str(visits["sessions"]),
        "bounce rate %": str(round(visits["bounce_rate"] * 100, 1)),
        "views per session": str(round(visits["views_per_session"], 1)),
        "median visit s": str(visits["median_duration_s"]),
        "mean visit s": str(round(visits["mean_duration_s"], 1)),
        "errors": str(report["errors"]),
        "custom events": str(report["custom_events"]),
    }
    assert 'http-equiv="refresh"' not in page and "otel-user-tracking dashboard DB" in page


def test_dashboard_command_refuses_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dashboard`` on a file that does not exist says so and exits 2 instead of serving an error page."""
    assert main(["dashboard", str(tmp_path / "nope.db"), "--port", "0"]) == 2
    assert "no analytics database" in capsys.readouterr().err


def test_the_dashboard_package_only_re_exports_a_sorted_all() -> None:
    """``otel_user_tracking.store.dashboard.__all__`` is sorted and every name in it exists."""
    import otel_user_tracking.store.dashboard as dashboard

    assert list(dashboard.__all__) == sorted(dashboard.__all__)
    assert all(getattr(dashboard, name) is not None for name in dashboard.__all__)


def _kpi_pageviews(page: str) -> int:
    return int(re.findall(r'data-kpi="pageviews"><b>(\d+)</b>', page)[0])


def _join_refreshes() -> None:
    for thread in threading.enumerate():
        if thread.name == "dashboard-refresh":
            thread.join(timeout=30)


def test_a_stale_page_is_served_while_it_is_rebuilt(events: list[AnalyticsEvent], tmp_path: Path) -> None:
    """The live page answers from its last build and rebuilds in the background; the next load is current."""
    path = fill(tmp_path / "live.db", events)
    options = PageOptions(since_text="2000-01-01", refresh_seconds=None, live=True)
    with running(DashboardServer(path, port=0, options=options)) as server:
        first = _kpi_pageviews(request(server, "GET", "/")[2])
        _join_refreshes()
        fill(path, [event("pageview", NOW, 10**6, route="/new")])
        assert _kpi_pageviews(request(server, "GET", "/")[2]) == first  # the last build, at once
        _join_refreshes()
        assert _kpi_pageviews(request(server, "GET", "/")[2]) == first + 1
        _join_refreshes()


def test_the_dashboard_command_serves_the_store_read_only(database: Path) -> None:
    """``otel-user-tracking dashboard DB --port 0`` prints its address, serves the page, writes nothing."""
    before = database.read_bytes()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_user_tracking",
            "dashboard",
            str(database),
            "--port",
            "0",
            "--since",
            "30d",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket listens
        url = re.findall(r"open (http://127\.0\.0\.1:\d+/)", line)[0]
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        page = response.read().decode()
        connection.close()
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert response.status == 200 and "(30d, daily points)" in page
    assert database.read_bytes() == before

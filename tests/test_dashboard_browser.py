"""The dashboard in a real browser: headless Chromium over the DevTools protocol, on the demo's store.

The README's demo fills a store; the dashboard serves it; Chromium opens the page, reads the
charts and tables, searches Jane's journey through the form, and records every request the
page made. The numbers are compared with ``report --format json`` for the same window. The
screenshots land in ``$OTEL_USER_TRACKING_ARTIFACTS`` when set (``docs/dashboard.png`` is
made that way), else in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_user_tracking.store.dashboard import DashboardServer, PageOptions

from ._chromium import DevTools, chromium, chromium_binary
from ._dashboard import running
from ._uvicorn import VENV_BIN, base_env, free_port

pytestmark = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium not installed (.ci/run installs it)"
)

ROOT = Path(__file__).resolve().parent.parent
JAEGER = "http://jaeger.example.test:16686"
WIDTH, HEIGHT = 1280, 1640

READ_PAGE = """JSON.stringify((() => {
  const rows = t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent));
  const tables = {};
  for (const section of document.querySelectorAll('section[data-section]')) {
    const table = section.querySelector('table.data');
    if (table) tables[section.dataset.section] = rows(table);
  }
  const series = {};
  for (const g of document.querySelectorAll('svg.chart g.series'))
    series[g.closest('svg').getAttribute('aria-label') + '/' + g.dataset.series] =
      [...g.querySelectorAll('circle')].map(c => Number(c.dataset.value));
  return {
    tables, series,
    kpis: Object.fromEntries([...document.querySelectorAll('[data-kpi]')]
      .map(e => [e.dataset.kpi, Number(e.querySelector('b').textContent)])),
    bars: Object.fromEntries([...document.querySelectorAll('svg.chart g.bar')]
      .map(g => [g.dataset.label, Number(g.dataset.value)])),
    charts: document.querySelectorAll('svg.chart').length,
    emptyCharts: document.querySelectorAll('svg.chart.empty').length,
    legends: document.querySelectorAll('svg.chart .legend').length,
    units: [...document.querySelectorAll('svg.chart text.unit')].map(t => t.textContent),
    errorTraceLinks: [...document.querySelectorAll('#errors a.trace')].map(a => a.href),
    errorJourneyForms: [...document.querySelectorAll('#errors form.journey')]
      .map(f => [f.getAttribute('action'), Object.fromEntries(new FormData(f))]),
    hrefs: [...document.querySelectorAll('[href]')].map(e => e.getAttribute('href')),
  };
})())"""

SEARCH_JANE = """(() => {
  const form = document.querySelector('#journey form');
  form.querySelector('select[name=kind]').value = 'user';
  form.querySelector('input[name=id]').value = 'user-42';
  form.requestSubmit();
  return true;
})()"""

READ_JOURNEY = """JSON.stringify({
  search: location.search,
  steps: [...document.querySelectorAll('#journey-steps tbody tr')].map(r => ({
    time: r.cells[0].textContent, type: r.cells[1].textContent, what: r.cells[2].textContent,
    trace: r.cells[4].querySelector('a').href})),
})"""


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README's demo run into its own store; returns the store and what the demo printed."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    env = base_env(
        {
            "PORT": str(free_port("127.0.0.1")),
            "DEMO_DB": str(db),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        }
    )
    done = subprocess.run(
        ["bash", "examples/run_demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return db, done.stdout


@pytest.fixture(scope="module")
def report(demo_store: tuple[Path, str]) -> dict[str, Any]:
    """``report --format json`` of the demo store for the dashboard's window, from the CLI."""
    command = [sys.executable, "-m", "otel_user_tracking", "report", str(demo_store[0]), "--since", "7d"]
    done = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def server(demo_store: tuple[Path, str]) -> Iterator[DashboardServer]:
    """The live dashboard of the demo store on a free loopback port."""
    options = PageOptions(jaeger_url=JAEGER, since_text="7d", refresh_seconds=60, live=True)
    with running(DashboardServer(demo_store[0], host="127.0.0.1", port=0, options=options)) as server:
        yield server


def _artifacts(tmp: Path) -> Path:
    directory = Path(os.environ.get("OTEL_USER_TRACKING_ARTIFACTS") or tmp)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def _browse(ws_url: str, url: str, artifacts: Path) -> dict[str, Any]:
    async with DevTools.connect(ws_url) as page:
        await page.call("Page.enable")
        await page.call("Network.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.navigate(url)
        dashboard = json.loads(await page.evaluate(READ_PAGE))
        shot = await page.call("Page.captureScreenshot", format="png")
        (artifacts / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
        mark = len(page.events)
        await page.evaluate(SEARCH_JANE)
        await page.wait_for("Page.loadEventFired", after=mark)
        journey = json.loads(await page.evaluate(READ_JOURNEY))
        await page.evaluate("document.querySelector('#journey').scrollIntoView()")
        shot = await page.call("Page.captureScreenshot", format="png")
        (artifacts / "dashboard-journey.png").write_bytes(base64.b64decode(shot["data"]))
        return {"dashboard": dashboard, "journey": journey, "requests": page.requested_urls()}


@pytest.fixture(scope="module")
def browsed(server: DashboardServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Chromium saw: the page's numbers, Jane's journey, every request the page made."""
    tmp = tmp_path_factory.mktemp("chromium")
    with chromium(tmp, WIDTH, HEIGHT) as ws_url:
        result = asyncio.run(_browse(ws_url, server.url, _artifacts(tmp)))
    result["artifacts"] = _artifacts(tmp)
    return result


def test_the_totals_and_charts_show_the_report_numbers(
    browsed: dict[str, Any], report: dict[str, Any]
) -> None:
    """KPIs, the pageview/visitor series and the status bars add up to ``report --format json``."""
    page = browsed["dashboard"]
    visits = report["sessions"]
    assert page["kpis"] == {
        "pageviews": report["pageviews"],
        "unique visitors": report["visitors"],
        "sessions": visits["sessions"],
        "bounce rate %": round(visits["bounce_rate"] * 100, 1),
        "views per session": round(visits["views_per_session"], 1),
        "median visit s": visits["median_duration_s"],
        "mean visit s": round(visits["mean_duration_s"], 1),
        "errors": report["errors"],
        "custom events": report["custom_events"],
    }
    assert sum(page["series"]["Pageviews/pageviews"]) == report["pageviews"] == 14
    assert max(page["series"]["Unique visitors/unique visitors"]) == report["visitors"] == 3
    assert sum(page["series"]["Pageviews/previous period"]) == 0
    assert sum(page["bars"].values()) == report["pageviews"] and page["bars"]["500"] == 2
    assert page["charts"] == 3 and page["emptyCharts"] == 0 and page["legends"] == 2
    assert "pageviews per day" in page["units"] and "day starting (UTC)" in page["units"]


def test_the_tables_show_the_report_rows(browsed: dict[str, Any], report: dict[str, Any]) -> None:
    """Pages, referrers, locales, UTM sources, terms and contents, entry and exit pages, errors and
    custom events are the report's rows."""
    tables = browsed["dashboard"]["tables"]
    assert tables["pages"] == [[r["page"], str(r["pageviews"]), str(r["visitors"])] for r in report["routes"]]
    for section, key in (("referrers", "referrers"), ("locales", "locales"), ("utm-sources", "utm_sources")):
        assert tables[section] == [[r["value"], str(r["count"])] for r in report[key]], section
    assert [row[:2] for row in tables["custom"]] == [[r["value"], str(r["count"])] for r in report["custom"]]
    assert tables["custom"][0][2] == "plan (2)"
    assert [row[:4] for row in tables["errors"]] == [
        [r["error_type"], str(r["count"]), r["last_seen"], r["last_message"]] for r in report["error_types"]
    ]
    assert tables["utm-campaigns"] == [["autumn", "1"]]
    assert tables["utm-terms"] == [["shoes", "1"]] and tables["utm-contents"] == [["banner", "1"]]
    visits = report["sessions"]
    for section, key in (("entry-pages", "entry_pages"), ("exit-pages", "exit_pages")):
        assert tables[section] == [[r["page"], str(r["sessions"])] for r in visits[key]], section
    # The demo's three browsers each make one visit of several pageviews: no bounce.
    assert (visits["sessions"], visits["bounces"]) == (3, 0)
    requests = {row[0]: int(row[1]) for row in tables["requests"]}
    assert requests == {r["page"]: r["pageviews"] for r in report["routes"]}


def test_the_device_and_filtered_panels_show_the_report_rows(
    browsed: dict[str, Any], report: dict[str, Any]
) -> None:
    """The device table (device type, browser, OS of pageviews) and the filtered requests by class
    are the report's rows: the demo's three desktop browsers, and its readiness probe as a bot."""
    tables = browsed["dashboard"]["tables"]
    assert tables["devices"] == [
        [r["device_type"], r["browser"], r["os"], str(r["pageviews"]), str(r["visitors"])]
        for r in report["devices"]
    ]
    assert {(r["device_type"], r["browser"], r["os"]) for r in report["devices"]} == {
        ("desktop", "Safari", "Mac OS X"),
        ("desktop", "Chrome", "Windows"),
        ("desktop", "Firefox", "Linux"),
    }
    assert sum(r["pageviews"] for r in report["devices"]) == report["pageviews"]
    assert tables["filtered"] == [[r["client"], str(r["requests"])] for r in report["filtered"]]
    assert [(r["client"], r["requests"]) for r in report["filtered"]] == [
        ("bot", 1),
        ("monitor", 0),
        ("script", 0),
    ]


def test_each_error_links_to_its_latest_trace_in_jaeger(
    browsed: dict[str, Any], report: dict[str, Any]
) -> None:
    """Every error row links to ``<jaeger>/trace/<trace_id>`` of its latest occurrence, and posts who saw
    it to the journey search: no link of the page holds a person's id."""
    page = browsed["dashboard"]
    assert page["errorTraceLinks"] == [f"{JAEGER}/trace/{r['trace_id']}" for r in report["error_types"]]
    assert page["errorJourneyForms"] == [["/journey", {"since": "7d", "kind": "user", "stored": "user-42"}]]
    assert not [href for href in page["hrefs"] if "user-42" in href]


def test_the_journey_search_finds_janes_events_in_order(
    browsed: dict[str, Any], demo_store: tuple[Path, str]
) -> None:
    """Searching user-42 shows her pageviews before the login, then hers, her custom event and error,
    oldest first, each with its trace."""
    with contextlib.closing(sqlite3.connect(demo_store[0])) as db:
        stored = db.execute(
            "SELECT type, trace_id FROM events WHERE user_id = 'user-42' OR visitor_id IN "
            "(SELECT visitor_id FROM events WHERE user_id = 'user-42') ORDER BY ts_us, id"
        ).fetchall()
    journey = browsed["journey"]
    assert journey["search"].startswith("?since=7d&journey=") and "user-42" not in journey["search"]
    steps = journey["steps"]
    assert [(step["type"], step["trace"]) for step in steps] == [
        (kind, f"{JAEGER}/trace/{trace_id}") for kind, trace_id in stored
    ]
    assert [step["what"] for step in steps] == [
        "POST /login",  # before the login: anonymous, by her visitor id
        "GET /me",
        "GET /products/{product_id}",  # a page that does not read the user: anonymous too
        "POST /checkout",
        "CHECKOUT_COMPLETED",
        "GET /boom",
        "RuntimeError",
    ]
    assert [step["time"] for step in steps] == sorted(step["time"] for step in steps)


def test_the_page_requests_nothing_but_the_dashboard(
    browsed: dict[str, Any], server: DashboardServer
) -> None:
    """No CDN, font, script or Jaeger request: every request the page made went to the dashboard."""
    requests = browsed["requests"]
    assert requests and requests[0] == server.url
    assert [url for url in requests if not (url.startswith(server.url) or url.startswith("data:"))] == []
    assert any(url.endswith("/journey") for url in requests)


def test_the_screenshots_are_saved(browsed: dict[str, Any]) -> None:
    """The page and the journey are captured as PNG artifacts."""
    for name in ("dashboard.png", "dashboard-journey.png"):
        data = (browsed["artifacts"] / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, name


def test_the_demo_ends_by_saying_how_to_open_the_dashboard(demo_store: tuple[Path, str]) -> None:
    """The README's first command prints the dashboard command and its address."""
    printed = demo_store[1]
    assert "otel-user-tracking dashboard" in printed and "http://127.0.0.1:8765" in printed

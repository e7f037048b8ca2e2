"""Ground truth through real servers: the report equals an independent count of generated traffic.

Known visitors (one loopback address and one browser each, from the user-agent corpus), a
crawler, logins, sessions with gaps over 30 minutes, bounces: served first by ``uvicorn
--workers 2``, then, after a restart on the same store, by gunicorn with two UvicornWorkers,
both under ``opentelemetry-instrument``. The report's visitors, sessions, bounce rate, visit
durations, entry and exit pages, device table and filtered requests must equal what this file
counts from the traffic it sent, exactly.

Sessions need hours to pass. The test app (not the package) points the OpenTelemetry SDK's
span clock at a file this test writes before each request, so every span starts at the
instant the plan gives it, in both workers and after the restart, while everything else runs
as in production. The instants are on the current UTC day, so the visitor ids (salted per
real UTC day, the salt shared through the store) stay those of one day.
"""

from __future__ import annotations

import os
import random
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from ._cli import report_json
from ._uvicorn import SERVER_HOST, UvicornServer, app_with_store, request

APP = textwrap.dedent(
    """
    import os

    import opentelemetry.sdk.trace as sdk_trace
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    import otel_user_tracking as out

    CLOCK = os.environ["GROUND_TRUTH_CLOCK"]

    def planned_time_ns():
        with open(CLOCK) as clock:
            return int(clock.read())

    sdk_trace.time_ns = planned_time_ns  # spans start and end at the test's planned instant

    async def page(request):
        user = request.headers.get("x-user")
        if user:
            out.set_user(id=user)
        return PlainTextResponse(str(os.getpid()))

    app = Starlette(routes=[Route(path, page, methods=["GET", "POST"]) for path in (
        "/", "/pricing", "/products/{id}", "/cart", "/checkout", "/login")])
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]
SERVERS = [
    ["uvicorn", "app:app", "--host", "{host}", "--port", "{port}", "--workers", "2"],
    ["gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", "{host}:{port}", "app:app"],
]
CORPUS = Path(__file__).parent / "data" / "user_agents.tsv"
BROWSERS = [  # (browser, os) of corpus agents, one per visitor
    ("Chrome", "Windows"),
    ("Firefox", "Ubuntu"),
    ("Safari", "Mac OS X"),
    ("Mobile Safari", "iOS"),
    ("Chrome Mobile", "Android"),
]
ROUTES = {"/": "/", "/pricing": "/pricing", "/cart": "/cart", "/checkout": "/checkout", "/login": "/login"}
GAP = timedelta(minutes=30)


@dataclass(frozen=True)
class Visit:
    """One planned request: when (ns since the epoch), who, what."""

    at_ns: int
    address: str
    agent: str
    method: str
    path: str
    user: Optional[str]

    @property
    def page(self) -> str:
        return "/products/{id}" if self.path.startswith("/products/") else ROUTES[self.path]


def corpus_agent(browser: str, os: str) -> tuple[str, tuple[str, str, str]]:
    """The corpus's first agent of that browser and OS, and its documented (device, browser, os)."""
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        client, device, found_browser, found_os, agent = line.split("\t")
        if client == "browser" and (found_browser, found_os) == (browser, os):
            return agent, (device, found_browser, found_os)
    raise AssertionError(f"no corpus agent for {browser} on {os}")


def plan(day_start: datetime, seed: int = 5) -> tuple[list[Visit], dict[str, tuple[str, str, str]]]:
    """The traffic: 10 visitors with 1 to 3 sessions of 1 to 4 pageviews, some logging in, and a
    crawler; sessions of one visitor more than 30 minutes apart, pageviews within one 1-9 minutes
    apart (so exactly 30 minutes never happens by chance: the rule's edge is tests/test_sessions.py's)."""
    rng = random.Random(seed)
    devices: dict[str, tuple[str, str, str]] = {}
    visits: list[Visit] = []
    base = day_start + timedelta(hours=1)
    pages = ["/", "/pricing", "/products/1", "/products/2", "/cart", "/checkout"]
    for index in range(10):
        address = f"127.0.0.{10 + index}"
        agent, device = corpus_agent(*BROWSERS[index % len(BROWSERS)])
        devices[f"{address} {agent}"] = device
        when = base + timedelta(minutes=rng.randrange(0, 60))
        user: Optional[str] = None
        for _ in range(rng.randint(1, 3)):
            for step in range(rng.randint(1, 4)):
                if step:
                    when += timedelta(minutes=rng.randint(1, 9), seconds=rng.randint(0, 59))
                path = rng.choice(pages)
                method = "GET"
                if user is None and index % 3 == 0 and step == 1:
                    path, method, user = "/login", "POST", f"user-{index}"
                visits.append(Visit(_ns(when), address, agent, method, path, user))
            when += GAP + timedelta(minutes=rng.randint(1, 90))
    crawler = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for minute in (5, 50, 95):
        visits.append(Visit(_ns(base + timedelta(minutes=minute)), "127.0.0.99", crawler, "GET", "/", None))
    return sorted(visits, key=lambda visit: visit.at_ns), devices


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def expected(visits: list[Visit], devices: dict[str, tuple[str, str, str]]) -> dict[str, Any]:
    """What the report must say, counted from the plan alone."""
    people = [visit for visit in visits if visit.address != "127.0.0.99"]
    by_visitor: dict[str, list[Visit]] = defaultdict(list)
    for visit in people:
        by_visitor[f"{visit.address} {visit.agent}"].append(visit)
    sessions: list[list[Visit]] = []
    for views in by_visitor.values():
        for before, visit in zip([None, *views], views):
            if before is None or visit.at_ns - before.at_ns > GAP.total_seconds() * 1e9:
                sessions.append([])
            sessions[-1].append(visit)
    durations = sorted((s[-1].at_ns - s[0].at_ns) // 1000 for s in sessions)  # µs, as stored
    seconds = sorted(duration // 1_000_000 for duration in durations)
    bounces = sum(1 for session in sessions if len(session) == 1)

    def top(pages: Counter[str]) -> list[dict[str, Any]]:
        ranked = sorted(pages.items(), key=lambda item: (-item[1], item[0]))[:10]
        return [{"page": page, "sessions": n} for page, n in ranked]

    device_views: Counter[tuple[str, str, str]] = Counter()
    device_people: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for key, views in by_visitor.items():
        device_views[devices[key]] += len(views)
        device_people[devices[key]].add(key)
    device_rows = sorted(
        (
            {
                "device_type": d,
                "browser": b,
                "os": o,
                "pageviews": n,
                "visitors": len(device_people[(d, b, o)]),
            }
            for (d, b, o), n in device_views.items()
        ),
        key=lambda row: (-row["pageviews"], row["device_type"], row["browser"], row["os"]),
    )
    return {
        "pageviews": len(people),
        "visitors": len(by_visitor),
        "sessions": {
            "sessions": len(sessions),
            "bounces": bounces,
            "bounce_rate": bounces / len(sessions),
            "pageviews": len(people),
            "views_per_session": len(people) / len(sessions),
            "mean_duration_s": sum(durations) / len(sessions) / 1e6,
            "median_duration_s": seconds[(len(seconds) - 1) // 2],
            "entry_pages": top(Counter(session[0].page for session in sessions)),
            "exit_pages": top(Counter(session[-1].page for session in sessions)),
        },
        "devices": device_rows[:10],
        "filtered_bots": len(visits) - len(people),
    }


@pytest.mark.slow
def test_the_report_equals_the_generated_traffic_across_workers_servers_and_a_restart(tmp_path: Path) -> None:
    """uvicorn --workers 2, a restart, gunicorn -w 2: visitors, sessions, bounce rate, durations,
    entry/exit pages, devices and filtered bots are exactly the plan's own count."""
    now = datetime.now(timezone.utc)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if day_start + timedelta(days=1) - now < timedelta(minutes=2):
        pytest.skip("too close to UTC midnight: the visitor-id day would change during the test")
    visits, devices = plan(day_start)
    clock = tmp_path / "clock"
    _set_clock(clock, visits[0].at_ns)
    database, env = app_with_store(
        tmp_path, APP, GROUND_TRUTH_CLOCK=str(clock), OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL="0.2"
    )
    halves = (visits[: len(visits) // 2], visits[len(visits) // 2 :])
    pids: set[str] = set()
    for command, part in zip(SERVERS, halves):  # the second server is the restart
        server = UvicornServer("", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI, command=command)
        server.start()
        try:
            for visit in part:
                _set_clock(clock, visit.at_ns)
                headers = {"user-agent": visit.agent, **({"x-user": visit.user} if visit.user else {})}
                status, _, body = request(visit.method, server.url + visit.path, headers, visit.address)
                assert status == 200, (visit, status)
                pids.add(body.decode())
        finally:
            server.stop()  # SIGTERM: the workers flush their analytics
    assert len(pids) >= 2, (
        pids
    )  # the restart's workers served too (which worker takes a request is the kernel's choice)
    since = (day_start - timedelta(hours=1)).isoformat()
    report = report_json(database, "--since", since)
    truth = expected(visits, devices)
    assert (report["pageviews"], report["visitors"]) == (truth["pageviews"], truth["visitors"])
    assert report["sessions"] == truth["sessions"]
    assert report["devices"] == truth["devices"]
    filtered = {row["client"]: row["requests"] for row in report["filtered"]}
    assert filtered["bot"] == truth["filtered_bots"]


def _set_clock(clock: Path, at_ns: int) -> None:
    """Move the app's span clock to ``at_ns`` in one step: a span of the previous request may
    still be ending in a worker (it reads the clock then), and a file rewritten in place can be
    read empty; a renamed file is read whole, old or new."""
    ahead = clock.with_suffix(".next")
    ahead.write_text(str(at_ns))
    os.replace(ahead, clock)

"""The dashboard's server under hostile and odd input: Host names, idle and slow connections,
malformed requests, odd stored data, the page cache and ids kept out of URLs (real sockets)."""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from otel_user_tracking.__main__ import main
from otel_user_tracking.store.dashboard import DashboardServer, PageOptions, UserIdForm
from otel_user_tracking.store.dashboard import server as server_module
from otel_user_tracking.store.dashboard.connections import ConnectionLimits
from otel_user_tracking.store.dashboard.hosts import host_of

from ._dashboard import NOW, event, exchange, fill, generate, request, running

KEY = "a-test-key-that-is-long-enough"
OPTIONS = PageOptions(since_text="2000-01-01", refresh_seconds=3600, live=True)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill(tmp_path_factory.mktemp("server") / "a.db", generate(600))


@contextlib.contextmanager
def serving(database: Path, **kwargs: Any) -> Iterator[DashboardServer]:
    kwargs.setdefault("options", OPTIONS)
    with running(DashboardServer(database, port=0, **kwargs)) as server:
        yield server


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0"])
def test_only_the_servers_own_host_names_are_answered(database: Path, bound: str) -> None:
    """Loopback names, the machine's names, --allow-host names and IP literals are served; other names
    (a DNS-rebinding page's) and malformed Host headers get 421, on loopback and on every interface."""
    with serving(database, host=bound, allow_hosts=["Dash.Example.TEST"]) as server:
        port = server.server_address[1]
        for host in (
            f"localhost:{port}",
            "LOCALHOST",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            f"10.1.2.3:{port}",
            f"{socket.gethostname()}:{port}",
            socket.getfqdn(),
            f"dash.example.test:{port}",
            "dash.example.test.:9999",  # a tunnel's own port
        ):
            assert request(server, "GET", "/", host=host)[0] == 200, host
        for host in (
            f"evil.example:{port}",
            "evil.example",
            f"localhost.evil.example:{port}",
            f"127.0.0.1.nip.io:{port}",
            f"dash.example.test.evil.example:{port}",
            "localhost:port",
            "[::1",
        ):
            status, _, page = request(server, "GET", "/", host=host)
            assert status == 421 and "--allow-host" in page and 'data-kpi="pageviews"' not in page, host
            assert request(server, "POST", "/journey", "kind=user&id=x", host=host)[0] == 421, host
        answer = exchange(server, b"GET / HTTP/1.0\r\n\r\n")  # no Host at all
        assert answer.startswith(b"HTTP/1.0 421 ")


def test_host_headers_are_parsed_strictly() -> None:
    """A Host header's name is taken without its port, lower-cased; malformed headers name nothing."""
    assert host_of("Example.COM.:80") == "example.com"
    assert host_of("[::1]:8765") == "::1"
    assert [host_of(h) for h in (None, "", "a:b", "[::1]x", "[nothost]:1", ":80")] == [None] * 6


def test_allow_host_takes_names_only(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--allow-host`` with a URL, a port or a path is refused at start with the form it takes."""
    for bad in ("http://dash.example", "dash.example:8765", "dash.example/x", ""):
        with pytest.raises(SystemExit):
            main(["dashboard", str(database), "--port", "0", "--allow-host", bad])
        assert "--allow-host" in capsys.readouterr().err


def _dashboard_threads() -> int:
    return sum(thread.name.startswith("dashboard") for thread in threading.enumerate())


def test_idle_connections_hold_no_thread_and_are_closed(database: Path) -> None:
    """200 idle connections hold no thread, are closed after the idle timeout (the oldest at once past
    max_open), and a request made meanwhile is served."""
    limits = ConnectionLimits(workers=4, max_open=64, idle_timeout=1.0)
    with serving(database, limits=limits) as server:
        assert request(server, "GET", "/")[0] == 200  # the workers have started
        before = threading.active_count()
        idle = [socket.create_connection(server.server_address, timeout=10) for _ in range(200)]
        try:
            assert request(server, "GET", "/")[0] == 200  # served after every idle one was accepted
            assert threading.active_count() == before and _dashboard_threads() == 4
            assert server.open_connections() <= 64
            started = time.monotonic()
            for sock in idle:
                assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 8
        finally:
            for sock in idle:
                sock.close()
        assert server.open_connections() == 0


def test_a_trickling_request_is_cut_off_at_the_request_timeout(database: Path) -> None:
    """A request sent a byte at a time is closed when request_timeout has passed since its first byte,
    however often bytes arrive; the other workers keep serving."""
    limits = ConnectionLimits(workers=2, request_timeout=1.0)
    with serving(database, limits=limits) as server:
        slow = socket.create_connection(server.server_address, timeout=10)
        stop = threading.Event()

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for byte in b"GET / HTTP/1.0\r\nX-Slow: " + b"a" * 100:
                    slow.send(bytes([byte]))
                    if stop.wait(0.1):  # a client this slow is what is tested
                        return

        sender = threading.Thread(target=trickle)
        started = time.monotonic()
        sender.start()
        try:
            assert request(server, "GET", "/")[0] == 200
            with contextlib.suppress(ConnectionResetError):
                assert slow.recv(65536) in (b"", b"HTTP/1.0 408 Request Timeout\r\n")
            assert time.monotonic() - started < 5  # the trickle alone would last 11 s
        finally:
            stop.set()
            sender.join()
            slow.close()


def test_requests_queued_behind_a_busy_worker_time_out_from_their_first_byte(database: Path) -> None:
    """Four unfinished requests before one worker are all closed about request_timeout after they began,
    not one timeout after another (which would take 4 s here)."""
    limits = ConnectionLimits(workers=1, request_timeout=1.0)
    with serving(database, limits=limits) as server:
        started = time.monotonic()
        stalled = [socket.create_connection(server.server_address, timeout=10) for _ in range(4)]
        try:
            for sock in stalled:
                sock.sendall(b"GET / HTTP/1.0\r\n")  # and nothing more
            for sock in stalled:
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(65536) in (b"", b"HTTP/1.0 408 Request Timeout\r\n")
            assert time.monotonic() - started < 2.5
        finally:
            for sock in stalled:
                sock.close()
        assert request(server, "GET", "/")[0] == 200


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /?since=0001-01-01T00:00:00%2B14:00 HTTP/1.0\r\n", 400),
        (b"GET /?since=9999-12-31T23:59:59-14:00 HTTP/1.0\r\n", 400),
        (b"GET /?since=99999999999w HTTP/1.0\r\n", 400),
        (b"POST /journey HTTP/1.0\r\nContent-Length: abc\r\n", 400),
        (b"POST /journey HTTP/1.0\r\nContent-Length: -1\r\n", 400),
        (b"POST /journey HTTP/1.0\r\nContent-Length: 1e3\r\n", 400),
        (b"POST /journey HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"POST /journey HTTP/1.0\r\nContent-Length: 99999\r\n", 413),
    ],
)
def test_a_malformed_request_gets_an_answer(database: Path, data: bytes, status: int) -> None:
    """Windows without a UTC time and bad Content-Length headers get 400 (or 413), not a dropped
    connection."""
    with serving(database) as server:
        answer = exchange(server, data + f"Host: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode())
        assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:80]
        assert request(server, "GET", "/")[0] == 200


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status_code", "abc"),
        ("status_code", b"\x00\xff"),
        ("duration_ms", "slow"),
        ("ts_us", "soon"),
        ("page", b"\xff\xfe"),
        ("meta", "{not json"),
        ("user_id", 42),
        ("error_message", b"\x80"),
    ],
)
def test_odd_stored_values_are_rendered(tmp_path: Path, column: str, value: object) -> None:
    """A value of the wrong type in any column (SQLite checks none) still gives the page, the journey and
    the report: what can be shown is shown."""
    when = NOW - timedelta(hours=1)
    common = {"user_id": "odd", "visitor_id": "v1", "route": "/odd"}
    path = fill(
        tmp_path / "odd.db",
        [
            event("pageview", when, 1, status_code=200, duration_ms=3.0, **common),
            event("error", when, 2, error_type="KeyError", error_message="k", **common),
            event("custom", when, 3, name="SIGNUP", meta={"plan": "pro"}, **common),
            event("pageview", when, 4, status_code=404, duration_ms=5.0, route="/fine", visitor_id="v2"),
        ],
    )
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"UPDATE events SET {column} = ? WHERE route IS NOT '/fine'", (value,))
        db.commit()
    with serving(path) as server:
        status, _, page = request(server, "GET", "/")
        assert status == 200 and 'data-kpi="pageviews"><b>2</b>' in page and "/fine" in page
        kind = "user" if column != "user_id" else "visitor"
        typed = "odd" if column != "user_id" else "v1"
        status, headers, _ = request(server, "POST", "/journey", urlencode({"kind": kind, "id": typed}))
        status, _, page = request(server, "GET", headers["Location"])
        assert status == 200 and 'id="journey-steps"' in page
    assert main(["report", str(path), "--since", "2000-01-01"]) == 0
    assert main(["report", str(path), "--since", "2000-01-01", "--format", "json"]) == 0


def test_alternating_windows_are_served_from_the_cache(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs on two windows cost one build each, not one per load."""
    builds: list[object] = []
    real = server_module.build_dashboard

    def counting(*args: Any, **kwargs: Any) -> Any:
        builds.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "build_dashboard", counting)
    with serving(database) as server:
        for _ in range(3):
            for since in ("7d", "2000-01-01"):
                status, _, page = request(server, "GET", f"/?since={since}")
                assert status == 200 and f"({since}," in page
    assert len(builds) == 2


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_PYTHON_USER_TRACKING_ID": "mask"},
        {"OTEL_PYTHON_USER_TRACKING_ID": "hash", "OTEL_PYTHON_USER_TRACKING_HASH_KEY": KEY},
    ],
    ids=["keep", "mask", "hash"],
)
def test_no_url_holds_a_user_id(database: Path, env: dict[str, str]) -> None:
    """Under every policy the journey search redirects to a relative URL holding an opaque key, not the
    typed id or its stored form; the page's own journey links are posted forms, not URLs with ids."""
    form = UserIdForm.from_env(env)
    (stored,) = form.stored("user-3")
    options = PageOptions(since_text="2000-01-01", refresh_seconds=3600, live=True, user_ids=form)
    with serving(database, options=options) as server:
        status, headers, _ = request(server, "POST", "/journey", urlencode({"kind": "user", "id": "user-3"}))
        location = headers["Location"]
        assert status == 303 and re.fullmatch(r"/\?since=[\w%-]+&journey=[0-9a-f]{32}", location), location
        assert "user" not in location and quote(stored) not in location and stored not in location
        status, _, page = request(server, "GET", location)
        assert status == 200 and 'id="journey-' in page
        if not env:
            assert 'id="journey-steps"' in page and "user-3" in page
        status, _, page = request(server, "GET", "/")
        hrefs = re.findall(r'href="([^"]*)"', page)
        assert hrefs and not [href for href in hrefs if "user" in href or "visitor" in href]
        assert '<form class="journey" method="post" action="/journey">' in page
        expired = request(server, "GET", "/?journey=" + "0" * 32)
        assert expired[0] == 200 and 'id="journey-expired"' in expired[2]


def test_a_journey_link_of_the_page_finds_the_stored_id(database: Path) -> None:
    """An error's "who saw it last" button posts the stored id, which is searched as it is (not hashed)."""
    form = UserIdForm.from_env(
        {"OTEL_PYTHON_USER_TRACKING_ID": "hash", "OTEL_PYTHON_USER_TRACKING_HASH_KEY": KEY}
    )
    options = PageOptions(since_text="2000-01-01", refresh_seconds=3600, live=True, user_ids=form)
    with serving(database, options=options) as server:
        page = request(server, "GET", "/")[2]
        kind, stored = re.findall(
            r'name="kind" value="(\w+)"><input type="hidden" name="stored" value="([^"]+)"', page
        )[0]
        body = urlencode({"since": "2000-01-01", "kind": kind, "stored": stored})
        location = request(server, "POST", "/journey", body)[1]["Location"]
        assert quote(stored) not in location
        page = request(server, "GET", location)[2]
        assert 'id="journey-steps"' in page and f"<code>{stored}</code>" in page


def test_the_service_selector_filters_the_page(tmp_path: Path) -> None:
    """With several services in the store the page lists them with a selector; ``?service=`` and
    ``?environment=`` show one service's numbers, an empty value every service's."""
    events = [
        event("pageview", NOW - timedelta(hours=index + 1), index, route="/", visitor_id=f"v{index}", **where)
        for index, where in enumerate(
            [{"service_name": "shop", "deployment_environment": "production"}] * 3
            + [{"service_name": "api", "deployment_environment": "staging"}] * 2
        )
    ]
    path = fill(tmp_path / "a.db", events)

    def pageviews(page: str) -> int:
        return int(re.search(r'data-kpi="pageviews"><b>(\d+)</b>', page).group(1))  # type: ignore[union-attr]

    with serving(path) as server:
        status, _, page = request(server, "GET", "/")
        assert status == 200 and pageviews(page) == 5 and 'id="service-filter"' in page
        assert (
            '<option value="api">api</option>' in page and '<option value="staging">staging</option>' in page
        )
        status, _, page = request(server, "GET", "/?since=2000-01-01&service=api&environment=")
        assert status == 200 and pageviews(page) == 2
        assert '<option value="api" selected>api</option>' in page
        status, _, page = request(server, "GET", "/?environment=production")
        assert status == 200 and pageviews(page) == 3

"""Serving the dashboard: a small stdlib HTTP server, read-only on the store, loopback by default.

``GET /`` renders the page (``?since=`` overrides the window; ``?user=``, ``?visitor=`` or
``?session=`` adds a journey by stored id). ``POST /journey`` takes the id as typed, turns a
user id into its stored form (hashing it under a hashing policy) and redirects to ``GET /``,
so the typed id never lands in a URL, the history or a log. The built dashboard is kept and
served for half the refresh interval, then rebuilt in the background while the last build is
still served: tabs left open cost the store one set of queries per interval, and none waits
on a big store after the first load. Requests whose ``Host`` is not the server's own are
refused, so a web page cannot read the dashboard by DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Union
from urllib.parse import parse_qs, urlencode, urlsplit

from ..report import parse_since
from ..store import connect_readonly
from .journey import ID_KINDS, IdKind, journey
from .page import CSP, JourneyView, PageOptions, render_page
from .queries import Dashboard, build_dashboard

logger = logging.getLogger(__name__)
MAX_FORM_BYTES = 4096


def dashboard_html(
    database: Union[str, Path],
    since: datetime,
    options: PageOptions,
    limit: int = 10,
    now: Optional[datetime] = None,
) -> str:
    """The page for ``since`` (to ``now``) as one self-contained HTML document (``report --html``)."""
    db = connect_readonly(database)
    try:
        return render_page(build_dashboard(db, since, now=now, limit=limit), options)
    finally:
        db.close()


class DashboardServer(ThreadingHTTPServer):
    """The live dashboard of one store.

    Usage: ``server = DashboardServer("otel-user-tracking.db", port=8765); server.serve_forever()``.

    Args:
        database: The SQLite store; opened read-only for each build.
        host: Address to bind; loopback unless you mean to share the page.
        port: Port to bind; 0 picks a free one (``server.url`` tells which).
        options: Page options; ``since_text`` is the default window.
        limit: Rows per table.
    """

    daemon_threads = True

    def __init__(
        self,
        database: Union[str, Path],
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        options: Optional[PageOptions] = None,
        limit: int = 10,
    ) -> None:
        self.database = Path(database)
        self.options = options or PageOptions(refresh_seconds=60, live=True)
        self.limit = limit
        parse_since(self.options.since_text)  # a bad default window fails at start, not per request
        self._cache: dict[str, tuple[float, Dashboard]] = {}
        self._cache_lock = threading.Lock()
        self._build_lock = threading.Lock()  # one build at a time: tabs refreshing together share it
        self._refreshing = False
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def allowed_host(self, header: Optional[str]) -> bool:
        """True when the request's ``Host`` names this server (always, when bound beyond loopback)."""
        host, port = str(self.server_address[0]), self.server_address[1]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return True
        names = {host, "localhost", "127.0.0.1", "[::1]", f"[{host}]"}
        return header in {f"{name}:{port}" for name in names}

    def dashboard(self, since_text: str) -> Dashboard:
        """The dashboard for ``since_text``: the last build when there is one, rebuilt in the
        background once it is older than half the refresh interval, so a page left open never
        waits on a big store after its first load (its header says when it was generated)."""
        ttl = (self.options.refresh_seconds or 0) / 2
        with self._cache_lock:
            cached = self._cache.get(since_text)
            if cached is not None:
                if time.monotonic() - cached[0] >= ttl and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(since_text,), name="dashboard-refresh", daemon=True
                    ).start()
                return cached[1]
        with self._build_lock:
            cached = self._cache.get(since_text)
            return cached[1] if cached is not None else self._build(since_text)

    def _build(self, since_text: str) -> Dashboard:
        db = connect_readonly(self.database)
        try:
            now = datetime.now(timezone.utc)
            built = build_dashboard(db, parse_since(since_text, now=now), now=now, limit=self.limit)
        finally:
            db.close()
        with self._cache_lock:
            self._cache = {since_text: (time.monotonic(), built)}
        return built

    def _refresh(self, since_text: str) -> None:
        try:
            with self._build_lock:
                self._build(since_text)
        except (sqlite3.Error, OSError) as exc:
            logger.warning("dashboard: the store could not be read (%s)", type(exc).__name__)
        finally:
            with self._cache_lock:
                self._refreshing = False

    def journey_view(self, kind: IdKind, values: tuple[str, ...], since_us: int) -> JourneyView:
        db = connect_readonly(self.database)
        try:
            return JourneyView(kind, values, journey(db, kind, values, since_us))
        finally:
            db.close()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "otel-user-tracking-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        parts = urlsplit(self.path)
        if parts.path != "/":
            self._send(
                HTTPStatus.NOT_FOUND, "<h1>Not found</h1><p>The dashboard is at <a href='/'>/</a>.</p>"
            )
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        options = self.server.options
        since_text = (query.get("since") or [options.since_text])[0].strip() or options.since_text
        try:
            parse_since(since_text)
        except (ValueError, OverflowError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"<h1>Bad window</h1><p>{escape(str(exc))}</p>")
            return
        try:
            dashboard = self.server.dashboard(since_text)
            view = None
            for kind in ID_KINDS:
                if kind in query:
                    values = tuple(dict.fromkeys(value.strip() for value in query[kind] if value.strip()))
                    view = self.server.journey_view(kind, values, dashboard.window.since_us)
                    break
        except (sqlite3.Error, OSError) as exc:
            logger.warning("dashboard: the store could not be read (%s)", type(exc).__name__)
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "<h1>The store could not be read</h1>")
            return
        page_options = PageOptions(
            jaeger_url=options.jaeger_url,
            since_text=since_text,
            refresh_seconds=options.refresh_seconds,
            live=True,
            user_ids=options.user_ids,
        )
        self._send(HTTPStatus.OK, render_page(dashboard, page_options, view))

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if urlsplit(self.path).path != "/journey":
            self._send(HTTPStatus.NOT_FOUND, "<h1>Not found</h1>")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_FORM_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "<h1>The search form is too large</h1>")
            return
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        kind = (form.get("kind") or ["user"])[0]
        typed = (form.get("id") or [""])[0]
        since_text = (form.get("since") or [self.server.options.since_text])[0]
        if kind not in ID_KINDS:
            self._send(HTTPStatus.BAD_REQUEST, "<h1>Search by user, visitor or session id</h1>")
            return
        if kind == "user":
            values = self.server.options.user_ids.stored(typed)
        else:
            values = (typed.strip(),) if typed.strip() else ()
        location = "/?" + urlencode([("since", since_text), *((kind, value) for value in values or ("",))])
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self._common_headers()
        self.end_headers()

    def _host_ok(self) -> bool:
        if self.server.allowed_host(self.headers.get("Host")):
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, "<h1>Open the dashboard by its own address</h1>")
        return False

    def _common_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")

    def _send(self, status: HTTPStatus, body: str) -> None:
        if not body.startswith("<!DOCTYPE"):
            head = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"></head>'
            body = f"{head}<body>{body}</body></html>"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: Union[int, str] = "-", size: Union[int, str] = "-") -> None:
        # The query string holds stored ids: log the method, path and status only.
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("dashboard: " + format, *args)

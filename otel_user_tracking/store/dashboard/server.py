"""Serving the dashboard: a small stdlib HTTP server, read-only on the store, loopback by default.

``GET /`` renders the page (``?since=`` overrides the window; ``?journey=`` adds the journey
of a search). ``POST /journey`` takes the id as typed (or, from the page's own links, as
stored), turns a user id into its stored form (hashing it under a hashing policy), keeps the
search under an opaque key (``JourneySearches``) and redirects to ``GET /?journey=<key>``, so
no id, typed or stored, lands in a URL, the history or a log. Built dashboards are kept for
the last few windows and served for half the refresh interval, then rebuilt in the background
while the last build is still served: tabs left open cost the store one set of queries per
interval, and none waits on a big store after the first load. Requests whose ``Host`` is not
one of the server's own names are refused (``HostAllowList``), connections are bounded and
timed out (``ConnectionLimits``), and a bad request or odd stored data gets an answer, never
a dropped connection.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Optional, Union
from urllib.parse import parse_qs, urlencode, urlsplit

from ..reader import Source, reading, store_errors
from ..report import parse_since
from .connections import BoundedHTTPServer, ConnectionLimits
from .hosts import HostAllowList
from .journey import ID_KINDS, IdKind, journey
from .page import CSP, JourneyView, PageOptions, render_page
from .queries import Dashboard, build_dashboard
from .searches import JourneySearches

logger = logging.getLogger(__name__)
MAX_FORM_BYTES = 4096
CACHED_WINDOWS = 8


def dashboard_html(
    database: Source,
    since: datetime,
    options: PageOptions,
    limit: int = 10,
    now: Optional[datetime] = None,
) -> str:
    """The page for ``since`` (to ``now``) as one self-contained HTML document (``report --html``),
    of the options' service and environment."""
    filters = {"service": options.service, "environment": options.environment}
    return render_page(
        reading(database, lambda db: build_dashboard(db, since, now=now, limit=limit, **filters)), options
    )


# A page's window and filter: its ``since`` text, service and environment (None: every one).
View = tuple[str, Optional[str], Optional[str]]


class DashboardServer(BoundedHTTPServer):
    """The live dashboard of one store.

    Usage: ``server = DashboardServer("otel-user-tracking.db", port=8765); server.serve_forever()``.

    Args:
        database: The store: a SQLite path or a ``postgresql://`` URL; read-only, for each build.
        host: Address to bind; loopback unless you mean to share the page.
        port: Port to bind; 0 picks a free one (``server.url`` tells which).
        options: Page options; ``since_text`` is the default window.
        limit: Rows per table.
        allow_hosts: Host names the page is also served under (``--allow-host``), beyond
            loopback, the bound address and the machine's own names.
        limits: Workers, open connections and timeouts.
    """

    def __init__(
        self,
        database: Source,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        options: Optional[PageOptions] = None,
        limit: int = 10,
        allow_hosts: Iterable[str] = (),
        limits: Optional[ConnectionLimits] = None,
    ) -> None:
        self.database: Source = database if isinstance(database, Path) else str(database)
        self.options = options or PageOptions(refresh_seconds=60, live=True)
        self.limit = limit
        parse_since(self.options.since_text)  # a bad default window fails at start, not per request
        self.hosts = HostAllowList.for_server(host, allow_hosts)
        self.searches = JourneySearches()
        self._cache: OrderedDict[View, tuple[float, Dashboard]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._build_lock = threading.Lock()  # one build at a time: tabs refreshing together share it
        self._refreshing: set[View] = set()
        super().__init__((host, port), _Handler, limits or ConnectionLimits())

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def allowed_host(self, header: Optional[str]) -> bool:
        """True when the request's ``Host`` names this server (see ``HostAllowList``)."""
        return self.hosts.allows(header)

    def dashboard(
        self, since_text: str, service: Optional[str] = None, environment: Optional[str] = None
    ) -> Dashboard:
        """The dashboard for ``since_text`` (of ``service`` and ``environment`` when given): the last
        build of that view when there is one,
        rebuilt in the background once it is older than half the refresh interval, so a page
        left open never waits on a big store after its first load (its header says when it was
        generated). The last ``CACHED_WINDOWS`` windows asked for are kept."""
        view: View = (since_text, service, environment)
        ttl = (self.options.refresh_seconds or 0) / 2
        with self._cache_lock:
            cached = self._cache.get(view)
            if cached is not None:
                self._cache.move_to_end(view)
                if time.monotonic() - cached[0] >= ttl and view not in self._refreshing:
                    self._refreshing.add(view)
                    threading.Thread(
                        target=self._refresh, args=(view,), name="dashboard-refresh", daemon=True
                    ).start()
                return cached[1]
        with self._build_lock:
            with self._cache_lock:
                cached = self._cache.get(view)
            return cached[1] if cached is not None else self._build(view)

    def _build(self, view: View) -> Dashboard:
        since_text, service, environment = view
        now = datetime.now(timezone.utc)
        since = parse_since(since_text, now=now)
        built = reading(
            self.database,
            lambda db: build_dashboard(
                db, since, now=now, limit=self.limit, service=service, environment=environment
            ),
        )
        with self._cache_lock:
            self._cache[view] = (time.monotonic(), built)
            self._cache.move_to_end(view)
            while len(self._cache) > CACHED_WINDOWS:
                self._cache.popitem(last=False)
        return built

    def _refresh(self, view: View) -> None:
        try:
            with self._build_lock:
                self._build(view)
        except Exception as exc:  # the last build stays served; the next request tries again
            logger.warning("dashboard: the page could not be rebuilt (%s)", type(exc).__name__)
        finally:
            with self._cache_lock:
                self._refreshing.discard(view)

    def journey_view(self, kind: IdKind, values: tuple[str, ...], since_us: int) -> JourneyView:
        return JourneyView(
            kind, values, reading(self.database, lambda db: journey(db, kind, values, since_us))
        )


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "otel-user-tracking-dashboard"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = self.server.request_reader(self.connection)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, method: Callable[[], None]) -> None:
        if not self.server.allowed_host(self.headers.get("Host")):
            self._send(
                HTTPStatus.MISDIRECTED_REQUEST,
                "<h1>Open the dashboard by its own address</h1><p>This host name is not one of the "
                "dashboard's; start it with <code>--allow-host NAME</code> to serve it under another.</p>",
            )
            return
        self._answered = False
        try:
            method()
        except (socket.timeout, ConnectionError):
            raise  # a slow or vanished client: the connection ends (handle_one_request logs it)
        except Exception as exc:
            if self._answered:  # the client went away mid-answer: nothing more to say
                raise
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if isinstance(exc, store_errors()):
            logger.warning("dashboard: the store could not be read (%s)", type(exc).__name__)
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "<h1>The store could not be read</h1>")
        else:  # stored data the page could not show: say so, keep serving
            logger.warning("dashboard: the page could not be built (%s)", type(exc).__name__)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "<h1>The page could not be built</h1>")

    def _get(self) -> None:
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
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"<h1>Bad window</h1><p>{escape(str(exc))}</p>")
            return
        service, environment = (_chosen(query, name) for name in ("service", "environment"))
        dashboard = self.server.dashboard(since_text, service, environment)
        view = None
        if "journey" in query:
            search = self.server.searches.get(query["journey"][0])
            if search is None:
                view = JourneyView("user", (), (), expired=True)
            else:
                view = self.server.journey_view(*search, dashboard.window.since_us)
        for kind in ID_KINDS:  # a journey by stored id, for links made by hand
            if view is None and kind in query:
                values = tuple(dict.fromkeys(value.strip() for value in query[kind] if value.strip()))
                view = self.server.journey_view(kind, values, dashboard.window.since_us)
        page_options = PageOptions(
            jaeger_url=options.jaeger_url,
            since_text=since_text,
            refresh_seconds=options.refresh_seconds,
            live=True,
            user_ids=options.user_ids,
            service=service,
            environment=environment,
        )
        self._send(HTTPStatus.OK, render_page(dashboard, page_options, view))

    def _post(self) -> None:
        if urlsplit(self.path).path != "/journey":
            self._send(HTTPStatus.NOT_FOUND, "<h1>Not found</h1>")
            return
        text = (self.headers.get("Content-Length") or "").strip()
        if self.headers.get("Transfer-Encoding") or not text.isdigit():
            self._send(HTTPStatus.BAD_REQUEST, "<h1>The search form needs a Content-Length</h1>")
            return
        length = int(text)
        if not 0 < length <= MAX_FORM_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "<h1>The search form is too large</h1>")
            return
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        kind = (form.get("kind") or ["user"])[0]
        since_text = (form.get("since") or [self.server.options.since_text])[0]
        if kind not in ID_KINDS:
            self._send(HTTPStatus.BAD_REQUEST, "<h1>Search by user, visitor or session id</h1>")
            return
        stored = (form.get("stored") or [""])[0].strip()
        typed = (form.get("id") or [""])[0]
        if stored:  # a link of the page: the id as the store holds it
            values: tuple[str, ...] = (stored,)
        elif kind == "user":
            values = self.server.options.user_ids.stored(typed)
        else:
            values = (typed.strip(),) if typed.strip() else ()
        key = self.server.searches.add(kind, values)
        self._answered = True
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/?" + urlencode([("since", since_text), ("journey", key)]))
        self.send_header("Content-Length", "0")
        self._common_headers()
        self.end_headers()

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
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: Union[int, str] = "-", size: Union[int, str] = "-") -> None:
        # The query string holds journey keys and windows: log the method, path and status only.
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("dashboard: " + format, *args)


def _chosen(query: dict[str, list[str]], name: str) -> Optional[str]:
    """A filter's value from the query string; None when absent or empty (every one)."""
    value = (query.get(name) or [""])[0]
    return value or None

"""``python -m otel_user_tracking report|dashboard DB`` (also the ``otel-user-tracking`` console script)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from .store.dashboard import (
    DEFAULT_JAEGER_URL,
    DashboardServer,
    PageOptions,
    UserIdForm,
    build_dashboard,
    render_page,
)
from .store.dashboard.hosts import check_host_name
from .store.reader import StoreUnavailable, open_reader, reading, shown
from .store.report import build_report, parse_since, render_json, render_table
from .store.report_csv import render_csv
from .store.sqlite.schema import SchemaError

_RENDERERS = {"table": render_table, "json": render_json, "csv": render_csv}
_STORE_HELP = "the store: a SQLite file (otel-user-tracking.db) or a postgresql://user@host/db URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-user-tracking", description="Read the analytics that otel-user-tracking collected."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="pageviews, visitors, sources, errors and custom events")
    report.add_argument("database", help=_STORE_HELP)
    report.add_argument(
        "--since", default="24h", help="window start: 30m, 24h, 7d, 2w or an ISO date (default 24h)"
    )
    report.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table (default), json, or csv: one long table, section,rank,item,metric,value",
    )
    report.add_argument("--limit", type=int, default=10, help="rows per section (default 10)")
    report.add_argument("--service", help="only the events of this service.name")
    report.add_argument("--environment", help="only the events of this deployment environment")
    report.add_argument(
        "--html", metavar="FILE", help="also write the dashboard page, self-contained, to FILE"
    )
    report.add_argument("--jaeger-url", default=DEFAULT_JAEGER_URL, help="Jaeger UI for trace links (--html)")
    dashboard = commands.add_parser("dashboard", help="a local web page of the store, refreshing itself")
    dashboard.add_argument("database", help=_STORE_HELP)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    dashboard.add_argument("--since", default="7d", help="default window: 24h, 7d, 2w or an ISO date (7d)")
    dashboard.add_argument(
        "--jaeger-url", default=DEFAULT_JAEGER_URL, help=f"Jaeger UI for trace links ({DEFAULT_JAEGER_URL})"
    )
    dashboard.add_argument("--refresh", type=int, default=60, help="seconds between page reloads (60)")
    dashboard.add_argument("--limit", type=int, default=10, help="rows per table (default 10)")
    dashboard.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also serve the page under this host name (repeatable); loopback names, the bound "
        "address, the machine's names and IP addresses are always served, other names refused",
    )
    return parser


def _check_jaeger_url(parser: argparse.ArgumentParser, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        parser.error(f"--jaeger-url {url!r}: use an http(s) URL such as {DEFAULT_JAEGER_URL}")
    return url.rstrip("/")


def _dashboard(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.refresh < 1:
        parser.error("--refresh must be at least 1 second")
    options = PageOptions(
        jaeger_url=_check_jaeger_url(parser, args.jaeger_url),
        since_text=args.since,
        refresh_seconds=args.refresh,
        live=True,
        user_ids=UserIdForm.from_env(),
    )
    for name in args.allow_host:
        try:
            check_host_name(name)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        open_reader(args.database).close()
        server = DashboardServer(
            args.database,
            host=args.host,
            port=args.port,
            options=options,
            limit=args.limit,
            allow_hosts=args.allow_host,
        )
    except (FileNotFoundError, SchemaError, StoreUnavailable, OSError) as exc:
        print(f"otel-user-tracking: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(
            f"otel-user-tracking: the dashboard listens on {args.host}: anyone who can reach it sees the "
            "analytics; prefer 127.0.0.1 and an SSH tunnel. It answers IP addresses and these names "
            f"only (--allow-host adds one): {', '.join(sorted(server.hosts.names))}",
            file=sys.stderr,
        )
    print(
        f"otel-user-tracking dashboard of {shown(args.database)}: open {server.url} (Ctrl-C stops it)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; a reader that stops reading (``report ... | head``) ends it quietly."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Python's documented pattern: the rest of the output (and the flush at exit) goes to
        # /dev/null, and the exit status is that of a process killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dashboard":
        try:
            parse_since(args.since)
        except ValueError as exc:
            parser.error(str(exc))
        if args.limit < 1:
            parser.error("--limit must be at least 1")
        return _dashboard(parser, args)
    now = datetime.now(timezone.utc)
    try:
        since = parse_since(args.since, now=now)
    except ValueError as exc:
        parser.error(str(exc))
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    jaeger_url = _check_jaeger_url(parser, args.jaeger_url) if args.html else DEFAULT_JAEGER_URL
    filters = {"service": args.service, "environment": args.environment}
    try:
        if args.html:  # the page and the printed report from one snapshot
            dashboard = reading(
                args.database, lambda db: build_dashboard(db, since, now=now, limit=args.limit, **filters)
            )
            report = dashboard.report
        else:
            report = build_report(args.database, since, args.limit, **filters)
    except (FileNotFoundError, SchemaError, StoreUnavailable) as exc:
        print(f"otel-user-tracking: {exc}", file=sys.stderr)
        return 2
    print(_RENDERERS[args.format](report), end="" if args.format == "csv" else "\n", flush=True)
    if args.html:
        options = PageOptions(jaeger_url=jaeger_url, since_text=args.since, **filters)
        Path(args.html).write_text(render_page(dashboard, options), encoding="utf-8")
        print(f"wrote the dashboard page to {args.html}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m otel_user_tracking report DB`` (also the ``otel-user-tracking`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from .analytics.report import build_report, parse_since, render_json, render_table
from .analytics.store import SchemaError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-user-tracking", description="Read the analytics that otel-user-tracking collected."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="pageviews, visitors, sources, errors and custom events")
    report.add_argument("database", help="the SQLite store, e.g. otel-user-tracking.db")
    report.add_argument(
        "--since", default="24h", help="window start: 30m, 24h, 7d, 2w or an ISO date (default 24h)"
    )
    report.add_argument("--format", choices=("table", "json"), default="table")
    report.add_argument("--limit", type=int, default=10, help="rows per section (default 10)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        parser.error(str(exc))
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        report = build_report(args.database, since, args.limit)
    except (FileNotFoundError, SchemaError) as exc:
        print(f"otel-user-tracking: {exc}", file=sys.stderr)
        return 2
    print(render_json(report) if args.format == "json" else render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

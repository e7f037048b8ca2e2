"""The dashboard at size: time to build and render the page, and to find a journey, on a big store.

The store holds ``--events`` events spread evenly over the last ``--days`` days (rows written
straight into the table in one transaction, in time order as the sink appends them), with
about 30 % of events from signed-in users and sessions on half of them. Each window is built
twice; the second, warm, time is the one a refreshing page sees.

Run: ``python benchmarks/bench_dashboard.py [--events 1000000] [--days 30] [--store PATH]``
(1 000 000 events take about a minute to generate; ``--store`` keeps the file for the next run).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from otel_user_tracking.analytics.events import EventRecord
from otel_user_tracking.store.dashboard import PageOptions, build_dashboard, journey, render_page
from otel_user_tracking.store.sqlite import schema as store

PAGES = ["/", "/pricing", "/products/{id}", "/cart", "/checkout", "/search"] + [
    f"/docs/{n}" for n in range(30)
]
DAY_US = 86_400_000_000


def rows(count: int, days: int, end_us: int) -> Iterator[EventRecord]:
    rng = random.Random(1)
    step = days * DAY_US // count
    for index in range(count):
        kind = rng.choices(["pageview", "error", "custom"], weights=[94, 2, 4])[0]
        yield EventRecord(
            f"e{index}",
            kind,
            end_us - days * DAY_US + index * step,
            f"{index:032x}",
            f"{index:016x}",
            name=f"EVENT_{rng.randrange(10)}" if kind == "custom" else None,
            method="GET",
            page=rng.choice(PAGES),
            status_code=rng.choice([200] * 8 + [404, 500]),
            duration_ms=round(rng.expovariate(1 / 30), 3),
            referrer=rng.choice([None, None, "https://news.example/"]),
            locale=rng.choice(["en-US", "de-DE", "fr-FR"]),
            utm_source=rng.choice([None, None, None, "newsletter"]),
            utm_campaign=rng.choice([None, None, None, "autumn"]),
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            user_id=f"user-{rng.randrange(5000)}" if rng.random() < 0.3 else None,
            visitor_id=f"v{rng.randrange(20_000)}",
            session_id=f"s{rng.randrange(50_000)}" if rng.random() < 0.5 else None,
            error_type="RuntimeError" if kind == "error" else None,
            error_message="boom" if kind == "error" else None,
            meta_json='{"plan":"pro"}' if kind == "custom" else None,
        )


def build(path: Path, count: int, days: int) -> None:
    start = time.perf_counter()
    db = store.connect(path)
    db.execute("BEGIN")
    db.executemany(store.INSERT, rows(count, days, int(time.time() * 1e6)))
    db.execute("COMMIT")
    db.close()
    print(f"generated {count} events over {days} days in {time.perf_counter() - start:.0f} s")


def timed(label: str, action: object) -> None:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    print(f"  {label:<34} cold {times[0] * 1000:7.0f} ms   warm {times[1] * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--store", type=Path, help="reuse or keep the generated store here")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        path = args.store or Path(stack.enter_context(tempfile.TemporaryDirectory())) / "bench.db"
        if not path.exists():
            build(path, args.events, args.days)
        db = stack.enter_context(contextlib.closing(store.connect_readonly(path)))
        (total,) = db.execute(f"SELECT COUNT(*) FROM {store.TABLE}").fetchone()
        print(f"{total} events in {path}")
        now = datetime.now(timezone.utc)
        options = PageOptions(live=True)
        for label, window in (
            ("24h", timedelta(hours=24)),
            ("7d", timedelta(days=7)),
            ("30d", timedelta(days=30)),
        ):
            since = now - window
            timed(
                f"page, --since {label}",
                lambda s=since: render_page(build_dashboard(db, s, now=now), options),
            )
        since_us = int((now - timedelta(days=7)).timestamp() * 1e6)
        for kind, value in (("user", "user-7"), ("session", "s7"), ("visitor", "v7")):
            timed(f"journey by {kind} id, 7 days", lambda k=kind, v=value: journey(db, k, (v,), since_us))


if __name__ == "__main__":
    main()

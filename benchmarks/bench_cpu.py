"""CPU time per request, split by thread: where the default stack's cost goes.

Each variant of ``_socket_app.py`` is imported in a fresh subprocess and driven in-process with
ASGI calls (no socket, so the figures hold on a busy machine: they are CPU time, not wall
time). The process is pinned to one core, as a server worker is, and after the requests it
flushes everything; the CPU time of every thread is read from ``/proc/self/task`` and divided
by the request count. The event loop's thread is what a server pays on its request path;
the analytics threads (converter, sink senders) share the same core in a real server, so
their time comes out of the same budget.

The requests go in bursts of 16 with 1 ms idle between them (``--idle-every``, ``--idle-ms``),
as a server waits in epoll between bursts: back to back, nothing in the loop ever blocks,
the niced analytics threads get a slice only every GIL switch interval, the span queue
fills and more than half the spans are dropped, so their threads' CPU per request would
count the work of fewer events than requests. Idle time is not CPU time; the idle moments
add a few µs to every variant's event loop (its caches are refilled after each). A run that
still drops events says so.

Run: ``python benchmarks/bench_cpu.py [--requests 20000] [--variants ours-default,...]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
VARIANTS = ("otel-1span", "ours-no-analytics", "ours-default")

_CHILD = r"""
import asyncio, json, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {0})
import _socket_app as bench

def thread_cpu() -> dict:
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[names.get(int(tid), tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return out

async def main(count: int) -> None:
    scope_base = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                  "scheme": "http", "path": "/users/7", "raw_path": b"/users/7", "query_string": b"",
                  "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
                  "headers": [(b"host", b"127.0.0.1:8000"),
                              (b"user-agent", b"wrk/4.2 Mozilla/5.0 Chrome/126"),
                              (b"accept-language", b"en-US,en;q=0.9")]}
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        return None
    every, idle = int(sys.argv[3]), float(sys.argv[4])
    async def serve(requests: int) -> None:
        for index in range(1, requests + 1):
            await bench.app(dict(scope_base), receive, send)
            if idle and index % every == 0:
                time.sleep(idle)  # what a server does in epoll between bursts: the workers run
    def sent() -> tuple:
        stats = bench.analytics.stats().values() if bench.analytics is not None else ()
        return sum(s.sent for s in stats), sum(s.enqueued - s.sent for s in stats)
    await serve(2000)
    if bench.analytics is not None:
        bench.analytics.force_flush(30_000)
    bench.provider.force_flush(30_000)
    sent_before, lost_before = sent()
    before, wall = thread_cpu(), time.perf_counter()
    await serve(count)
    if bench.analytics is not None:
        bench.analytics.force_flush(60_000)
    bench.provider.force_flush(60_000)
    after, wall = thread_cpu(), time.perf_counter() - wall
    sent_after, lost_after = sent()
    per = {k: (after[k] - before.get(k, 0.0)) / count * 1e6 for k in after}
    print(json.dumps({"per_request_us": per, "wall_us": wall / count * 1e6,
                      "events_sent": sent_after - sent_before, "events_lost": lost_after - lost_before}))

asyncio.run(main(int(sys.argv[2])))
"""


def measure(
    variant: str, requests: int, workdir: Path, every: int = 16, idle: float = 0.001
) -> dict[str, Any]:
    env = dict(
        os.environ,
        BENCH_VARIANT=variant,
        BENCH_DB=str(workdir / f"{variant}.db"),
        BENCH_STATS=str(workdir / f"{variant}.json"),
        OTEL_PYTHON_USER_TRACKING_SINKS="none",
    )
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(HERE), str(requests), str(every), str(idle)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _short(thread_name: str) -> str:
    return thread_name.split("(", 1)[0]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the cheapest is shown")
    parser.add_argument("--idle-every", type=int, default=16, help="requests between two idle moments")
    parser.add_argument(
        "--idle-ms", type=float, default=1.0, help="length of each idle moment (0: back to back)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            runs = [
                measure(variant, args.requests, Path(tmp), args.idle_every, args.idle_ms / 1000)
                for _ in range(args.repeat)
            ]
            # The cheapest run is the one least disturbed by other work on the machine.
            result = min(runs, key=lambda run: sum(run["per_request_us"].values()))
            threads = {_short(k): v for k, v in result["per_request_us"].items() if v >= 0.05}
            total = sum(threads.values())
            parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]))
            print(f"{variant:18} {total:6.1f} µs CPU/request  ({parts})")
            if result["events_lost"]:
                # Analytics threads that cannot keep up drop spans: their CPU per request is
                # then that of fewer events than requests, and the figure flatters them.
                print(
                    f"{'':18} {result['events_lost']} of {result['events_lost'] + result['events_sent']} "
                    "events dropped or failed: the analytics figures undercount"
                )


if __name__ == "__main__":
    main()

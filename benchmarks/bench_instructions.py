"""Instructions per request of bench_socket.py's app, counted by valgrind: a busy host cannot move them.

Each variant of ``_socket_app.py`` (OTel's 1-span middleware, ours without analytics, the default
stack) is driven in-process through ASGI calls (the request wrk sends, in bursts of 16 with 1 ms
between them, then every processor flushed) under ``valgrind --tool=cachegrind``, once with
``--requests`` requests and once with 200: the difference over the difference in requests is the
instructions one request costs, start-up and flushing cancelled out (every thread counted: the
span processor's, the analytics converter and the store). Run it for several revisions (each
checked out with ``git archive`` into a temporary directory, served from there) to compare code
in one run; ratios against OTel's 1 span are what bench_socket.py's CPU ratios estimate. Counts
are deterministic to about 0.2 % (``PYTHONHASHSEED=0``), where CPU time on a shared host moves
by several percent between identical rounds. Needs valgrind (``apt-get install valgrind``); a
run of three variants and two revisions takes ten minutes on two cores.

Run: ``python benchmarks/bench_instructions.py [--revisions a0d6347,HEAD] [--variants ...]
[--requests 1200] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = ("otel-1span", "ours-no-analytics", "ours-default")
BASELINE = "otel-1span"
FEW = 200
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/users/7",
    "raw_path": b"/users/7",
    "query_string": b"",
    "root_path": "",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
}


def child(requests: int) -> None:
    """Serve ``requests`` requests of the variant in ``BENCH_VARIANT`` (under valgrind)."""
    sys.path.insert(0, str(HERE))
    import _socket_app as app_module  # the revision's package comes from PYTHONPATH

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def run() -> None:
        for index in range(requests):
            await app_module.app(dict(SCOPE), receive, send)
            if index % 16 == 15:
                await asyncio.sleep(0.001)
        if app_module.analytics is not None:
            app_module.analytics.force_flush(30_000)
        app_module.provider.force_flush(30_000)

    asyncio.run(run())


def instructions(tree: Path, variant: str, requests: int, workdir: Path) -> int:
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("OTEL_")},
        "PYTHONPATH": str(tree),
        "PYTHONHASHSEED": "0",
        "BENCH_VARIANT": variant,
        "BENCH_DB": str(workdir / f"{tree.name}-{variant}-{requests}.db"),
        "BENCH_STATS": str(workdir / f"{tree.name}-{variant}-{requests}.json"),
        "OTEL_PYTHON_USER_TRACKING_SINKS": "none",
    }
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    command += [sys.executable, str(Path(__file__).resolve()), "--child", str(requests)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    found = _IREFS.search(done.stderr)
    if done.returncode or found is None:
        raise RuntimeError(f"{variant} on {tree.name} failed:\n{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def checkout(revision: str, into: Path) -> Path:
    """The package as of ``revision``, in ``into/<revision>``."""
    tree = into / revision.replace("/", "_")
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "otel_user_tracking"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--revisions", default="HEAD", help="comma-separated git revisions")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return
    revisions = [name for name in args.revisions.split(",") if name]
    variants = [name for name in args.variants.split(",") if name]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        trees = {revision: checkout(revision, workdir) for revision in revisions}
        jobs = [(r, v, n) for r in revisions for v in variants for n in (FEW, args.requests)]
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(
                zip(jobs, pool.map(lambda job: instructions(trees[job[0]], job[1], job[2], workdir), jobs))
            )
    per_request = {
        (r, v): (counts[(r, v, args.requests)] - counts[(r, v, FEW)]) / (args.requests - FEW)
        for r in revisions
        for v in variants
    }
    seconds = time.monotonic() - started
    print(f"instructions per request (valgrind, {args.requests} - {FEW} requests, {seconds:.0f} s)")
    print(f"{'revision':12} " + " ".join(f"{v:>18}" for v in variants) + "   ratios vs 1 span (instructions)")
    for revision in revisions:
        cells = " ".join(f"{per_request[(revision, v)] / 1000:17.1f}k" for v in variants)
        base = per_request.get((revision, BASELINE))
        ratios = (
            "  ".join(f"{v} {base / per_request[(revision, v)]:.3f}" for v in variants if v != BASELINE)
            if base
            else ""
        )
        print(f"{revision:12} {cells}   {ratios}")


if __name__ == "__main__":
    main()

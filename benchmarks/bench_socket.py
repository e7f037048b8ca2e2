"""Requests per second and latency over a real socket: ours against OpenTelemetry and a peer stack.

Each variant of ``_socket_app.py`` runs in its own uvicorn (httptools) on 127.0.0.1, pinned to
core 0; the load generator is pinned to core 1 (``wrk`` when installed, else a bounded Python
client). Rounds interleave the variants so the machine's drift hits all of them alike; the
figures are medians over rounds, and the ratios are against the OTel 1-span middleware of
the same run. After each run the server is stopped with SIGTERM and the benchmark checks that
the variant did its work: spans exported, rows in the store equal to completed requests,
captures received by the loopback PostHog server. Beside the throughput, the server's CPU time
per request under load is read from ``/proc`` for its event-loop thread and for all its other
threads: a figure that another process on the machine disturbs much less than requests per
second.

Then a tail-latency probe: one request at a time on one connection, client and server each
on their own core, for ours with and without analytics, their two servers probed in turns;
once with a random pause before each request (as independent users send them) and once back
to back (see ``probe`` for why both).

Run: ``python benchmarks/bench_socket.py [--duration 8] [--rounds 3] [--connections 16]``
(``pip install httptools`` first; ``apt-get install wrk`` for the load generator).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from _capture import CaptureServer

HERE = Path(__file__).resolve().parent
VARIANTS = ("otel-defaults", "otel-1span", "ours-no-analytics", "ours-default", "peer")
BASELINE = "otel-1span"
PATH = "/users/7"
START_TIMEOUT = 20.0
PROBE_BLOCK = 1000  # requests a variant gets in one turn of the one-at-a-time probe
PROBE_TIME_LIMIT = 120.0
THINK_SECONDS = 0.0002  # the most a request of the paced probe waits before it is sent
PROBE_SEED = 7
STOP_TIMEOUT = 40.0


@dataclass
class Run:
    variant: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    check: str
    loop_us: float  # server CPU per request: the event loop's thread
    others_us: float  # and every other thread (span export, analytics)


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core)]
    return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(variant: str, workdir: Path, posthog_url: str) -> Iterator[tuple[int, Path, Path, int]]:
    """Run one variant's uvicorn; yield (port, store path, stats path, pid); SIGTERM it at the end."""
    port = _free_port()
    database = workdir / f"{variant}.db"
    stats = workdir / f"{variant}.json"
    for path in (database, stats, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.unlink(missing_ok=True)
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("OTEL_")},
        "BENCH_VARIANT": variant,
        "BENCH_DB": str(database),
        "BENCH_STATS": str(stats),
        "BENCH_POSTHOG": posthog_url,
        "OTEL_PYTHON_USER_TRACKING_SINKS": "none",
    }
    command = [
        *_pin(0),
        sys.executable,
        "-m",
        "uvicorn",
        "_socket_app:app",
        "--app-dir",
        str(HERE),
        "--http",
        "httptools",
        "--loop",
        "asyncio",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_listening(port, process)
        yield port, database, stats, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _wait_until_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} within {START_TIMEOUT}s")


def sequential(port: int, count: int, time_limit: float) -> list[float]:
    """Latencies (seconds) of ``count`` requests, one at a time on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return _timed(connection, count, time.monotonic() + time_limit)
    finally:
        connection.close()


def _timed(
    connection: http.client.HTTPConnection,
    count: int,
    deadline: float,
    pause: Optional[random.Random] = None,
) -> list[float]:
    """Latencies (seconds) of up to ``count`` requests on ``connection``, stopping at ``deadline``.

    With ``pause``, each request waits first a random 0 to ``THINK_SECONDS`` (spun, not slept:
    a sleep's timer slack is as long as the pauses; the client has its own core).
    """
    latencies = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        if pause is not None:
            ready = time.perf_counter() + pause.uniform(0, THINK_SECONDS)
            while time.perf_counter() < ready:
                pass
        start = time.perf_counter()
        connection.request("GET", PATH)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    return latencies


def load(port: int, duration: float, connections: int) -> tuple[int, float, float, float]:
    """(requests, req/s, p50 ms, p99 ms) of a closed-loop load: wrk when present."""
    if shutil.which("wrk"):
        return _wrk(port, duration, connections)
    return _python_load(port, duration, connections)


def _wrk(port: int, duration: float, connections: int) -> tuple[int, float, float, float]:
    command = [
        *_pin(1),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--latency",
        f"http://127.0.0.1:{port}{PATH}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failures:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return requests, rps, _wrk_ms(output, "50%"), _wrk_ms(output, "99%")


def _wrk_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _python_load(port: int, duration: float, connections: int) -> tuple[int, float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        mine = sequential(port, 10_000_000, duration)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 30)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return len(ordered), len(ordered) / elapsed, _pct(ordered, 0.5) * 1000, _pct(ordered, 0.99) * 1000


def _pct(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def check(
    variant: str,
    served: int,
    connections: int,
    database: Path,
    stats_path: Path,
    capture: CaptureServer,
    before: int,
) -> str:
    """That the variant did its work, in a few words; raises when it did not.

    The server also answers the requests still in flight when the load stops (at most one
    per connection), so its own count of requests is the span count: the store must hold
    exactly one pageview per server span, and the loopback PostHog one capture per span.
    """
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    handled = stats["spans"] // (3 if variant == "otel-defaults" else 1)
    if not served <= handled <= served + connections:
        raise RuntimeError(f"{variant}: {stats['spans']} spans exported for {served} requests")
    if variant == "ours-default":
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT COUNT(*) FROM events WHERE type = 'pageview'").fetchone()[0]
        if rows != handled:
            raise RuntimeError(f"{variant}: {rows} rows in the store for {handled} server spans")
        return f"{rows} rows = spans"
    if variant == "peer":
        captured = capture.events - before
        if captured != handled:
            raise RuntimeError(f"{variant}: {captured} captures for {handled} server spans")
        return f"{captured} captures = spans"
    return f"{stats['spans']} spans"


def run_variant(
    variant: str, workdir: Path, capture: CaptureServer, duration: float, connections: int
) -> Run:
    before = capture.events
    with serve(variant, workdir, capture.url) as (port, database, stats, pid):
        warm = len(sequential(port, 300, 10))
        cpu_before = thread_cpu(pid)
        requests, rps, p50, p99 = load(port, duration, connections)
        cpu_after = thread_cpu(pid)
    spent = {tid: cpu_after[tid] - cpu_before.get(tid, 0.0) for tid in cpu_after}
    loop = spent.pop(pid, 0.0)  # the main thread runs the event loop; its id is the pid
    per_request = 1e6 / max(requests, 1)
    return Run(
        variant,
        requests,
        rps,
        p50,
        p99,
        check(variant, requests + warm, connections, database, stats, capture, before),
        loop * per_request,
        sum(spent.values()) * per_request,
    )


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process ``pid`` (Linux; else empty)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seconds: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
                seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


@dataclass
class Probe:
    """One variant's one-request-at-a-time latencies (ms): all of them, and each turn's p99."""

    p50_ms: float
    p99_ms: float
    turn_p99_ms: list[float]


def probe(
    variants: Sequence[str], workdir: Path, capture: CaptureServer, count: int, *, think: bool
) -> dict[str, Probe]:
    """One request at a time, ``count`` requests for each variant.

    The variants' servers run side by side (on core 0, the client on core 1) and are probed
    in turns of ``PROBE_BLOCK`` requests, each on its own keep-alive connection, so a slow
    spell of the machine falls on all of them alike. A server is stopped (SIGSTOP) outside its
    turns: running, the default stack's workers could finish their batches during the other
    server's turn, on the same core, and the work would be counted against the wrong variant.
    Beside the p99 of all requests, each
    turn's p99 is kept, and the median of the turns' ratios is what a spell of the machine
    moves least. A turn is long enough that the first requests after a switch, which find
    the server's caches cold, stay well under 1 % of the requests.

    Back to back (``think`` false), the client's fixed rhythm can lock into step with the
    analytics workers' own (slices of 50 µs, pauses of 100 µs, a wake every 100 spans): a
    server then runs in one of two modes for minutes, its p99 0.37-0.47 ms or 0.7-0.8 ms,
    whatever the address layout and hash seed. With ``think``, each request comes after a
    random pause (the same seeded sequence for every variant), as requests of independent
    users do, and the modes are gone (p99 0.41-0.44 ms in six runs out of six).
    """
    turns: dict[str, list[list[float]]] = {name: [] for name in variants}
    pauses = {name: random.Random(PROBE_SEED) if think else None for name in variants}
    with contextlib.ExitStack() as stack:
        connections, pids = {}, {}
        for name in variants:
            port, _, _, pids[name] = stack.enter_context(serve(name, workdir, capture.url))
            connections[name] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            stack.callback(connections[name].close)
            stack.callback(_signal, pids[name], signal.SIGCONT)  # before serve() stops it
        stack.enter_context(_on_core(1))
        deadline = time.monotonic() + PROBE_TIME_LIMIT
        for name, connection in connections.items():
            _timed(connection, 300, deadline)
            _signal(pids[name], signal.SIGSTOP)
        for _ in range(max(1, count // PROBE_BLOCK)):
            for name, connection in connections.items():
                _signal(pids[name], signal.SIGCONT)
                measured = _timed(connection, min(count, PROBE_BLOCK), deadline, pauses[name])
                _signal(pids[name], signal.SIGSTOP)
                turns[name].append(sorted(measured))
    results = {}
    for name, measured_turns in turns.items():
        ordered = sorted(latency for turn in measured_turns for latency in turn)
        turn_p99 = [_pct(turn, 0.99) * 1000 for turn in measured_turns if turn]
        results[name] = Probe(_pct(ordered, 0.5) * 1000, _pct(ordered, 0.99) * 1000, turn_p99)
    return results


def print_probe(probes: dict[str, Probe]) -> None:
    for name, result in probes.items():
        print(f"{name:18} p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms")
    default, bare = probes["ours-default"], probes["ours-no-analytics"]
    print(f"  p99 default stack / without analytics: {default.p99_ms / bare.p99_ms:.2f}")
    paired = [ours / base for ours, base in zip(default.turn_p99_ms, bare.turn_p99_ms)]
    turns = ", ".join(f"{ratio:.2f}" for ratio in paired)
    print(f"  median of the turns' p99 ratios: {statistics.median(paired):.2f}  ({turns})")


def _signal(pid: int, signum: int) -> None:
    """Send ``signum`` to a server; one that has exited already is ``serve``'s to report."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@contextlib.contextmanager
def _on_core(core: int) -> Iterator[None]:
    """Run the calling thread on ``core`` for the block (where the machine has more than one)."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--probe-requests", type=int, default=10_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    variants = [name for name in args.variants.split(",") if name]
    capture = CaptureServer()
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for round_number in range(args.rounds):
            for variant in variants:
                run = run_variant(variant, workdir, capture, args.duration, args.connections)
                runs[variant].append(run)
                print(
                    f"round {round_number + 1} {variant:18} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                    f"  p99 {run.p99_ms:6.2f} ms  CPU/request {run.loop_us:5.1f} + {run.others_us:4.1f} µs"
                    f"  ({run.check})",
                    flush=True,
                )
        if args.rounds:  # --rounds 0: the probe alone
            medians = {
                name: (
                    statistics.median(r.rps for r in rs),
                    statistics.median(r.p50_ms for r in rs),
                    statistics.median(r.p99_ms for r in rs),
                    statistics.median(r.loop_us for r in rs),
                    statistics.median(r.others_us for r in rs),
                )
                for name, rs in runs.items()
            }
            base = medians.get(BASELINE)
            print(
                f"\nmedians of {args.rounds} rounds, {args.connections} connections,"
                f" {args.duration:.0f} s each"
            )
            print(
                f"{'variant':18} {'req/s':>8} {'vs 1-span':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99 vs':>7}"
                f"  {'CPU µs/request: loop + other threads'}"
            )
            for name, (rps, p50, p99, loop_us, others_us) in medians.items():
                ratio = f"{rps / base[0]:.2f}" if base else "-"
                tail = f"{p99 / base[2]:.2f}" if base else "-"
                print(
                    f"{name:18} {rps:8.0f} {ratio:>9} {p50:7.2f} {p99:7.2f} {tail:>7}"
                    f"  {loop_us:6.1f} + {others_us:4.1f} = {loop_us + others_us:6.1f}"
                )
            if BASELINE in runs:
                # Each round's ratio pairs runs a few seconds apart, so slow drift of the machine
                # cancels out of it; the ratio of medians above pairs runs of different rounds.
                print("\nmedian of the per-round ratios to the 1-span middleware (req/s):")
                for name, rs in runs.items():
                    paired = [run.rps / base_run.rps for run, base_run in zip(rs, runs[BASELINE])]
                    rounds = ", ".join(f"{ratio:.2f}" for ratio in paired)
                    print(f"{name:18} {statistics.median(paired):5.2f}  ({rounds})")
        if args.probe_requests:
            pair = ("ours-no-analytics", "ours-default")
            for think, pacing in (
                (True, f"after a random pause of 0-{THINK_SECONDS * 1e6:.0f} µs"),
                (False, "back to back"),
            ):
                print(
                    f"\none request at a time, {pacing} ({args.probe_requests} requests each, in"
                    f" interleaved turns of {PROBE_BLOCK}), per-request latency"
                )
                print_probe(probe(pair, workdir, capture, args.probe_requests, think=think))
    capture.close()


if __name__ == "__main__":
    main()

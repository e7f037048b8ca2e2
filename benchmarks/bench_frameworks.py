"""Requests per second of each framework under the real ``opentelemetry-instrument``: ours
against contrib's own instrumentation of that framework, in the same run.

Every variant serves the same app (``_framework_apps.py``) with the same server command,
pinned to core 0 (``taskset``); ``wrk`` (else a Python client) loads it from core 1, and the
spans go over OTLP/HTTP to a receiver on core 1 too (``tests/_otlp_receiver.py``), so each
variant pays the same export. The variants of a framework differ only in the environment
that ``opentelemetry-instrument`` sees (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, our sinks).
Rounds interleave the variants; figures are medians over rounds; ratios are against the
framework's ``baseline``, of req/s and of the server's CPU time per request (all its
processes and threads, from ``/proc``), which other processes on a busy machine disturb
less. After each run the server is stopped with SIGTERM and its work is checked: a SERVER
span received for every request, and for analytics variants one pageview per span in the store.

Adding a framework: its app in ``_framework_apps.py`` (Django's, which needs a settings
module, is ``_django_settings.py`` and ``_django_app.py``), a ``Server`` and its variants in
``VARIANTS`` with one marked ``baseline``.

Run: ``python benchmarks/bench_frameworks.py [--duration 8] [--rounds 3] [--variants flask-contrib,...]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_socket import (
    Run,
    _free_port,
    _pin,
    _wait_until_listening,
    load,
    sequential,
    thread_cpu,
)

from tests._otlp_receiver import OTLPReceiver

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STOP_TIMEOUT = 40.0
WARM_REQUESTS = 300
PATH = "/users/7"  # what bench_socket's load and warm-up request


@dataclass(frozen=True)
class Server:
    """How a framework's app is served: the command, with ``{port}``, run from ``benchmarks/``,
    and the WSGI app (``module:attribute``) that ``--in-process`` calls directly."""

    command: tuple[str, ...]
    wsgi_app: str


@dataclass(frozen=True)
class Variant:
    """One way of running a framework's app under ``opentelemetry-instrument``.

    Args:
        framework: Which ``SERVERS`` entry serves it; ratios compare variants of one framework.
        disabled: ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (``user_tracking`` for contrib alone).
        analytics: Whether our analytics go to the SQLite store (else ``SINKS=none``).
        baseline: The variant the framework's ratios are against.
        instrumented: False runs the server without ``opentelemetry-instrument`` (for scale).
    """

    framework: str
    disabled: str
    analytics: bool = False
    baseline: bool = False
    instrumented: bool = True
    env: dict[str, str] = field(default_factory=dict)


SERVERS = {
    "flask": Server(
        ("gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "_framework_apps:flask_app"),
        "_framework_apps:flask_app",
    ),
    "django": Server(
        ("gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "_django_app:application"),
        "_django_app:application",
    ),
}
_DJANGO = {"DJANGO_SETTINGS_MODULE": "_django_settings"}  # contrib's instrumentor reads them as it loads
VARIANTS = {
    "flask-bare": Variant("flask", disabled="", instrumented=False),
    "flask-contrib": Variant("flask", disabled="user_tracking", baseline=True),
    "flask-ours-no-analytics": Variant("flask", disabled="flask"),
    "flask-ours-default": Variant("flask", disabled="flask", analytics=True),
    "flask-ours-default+contrib": Variant("flask", disabled="", analytics=True),
    "django-bare": Variant("django", disabled="", instrumented=False, env=_DJANGO),
    "django-contrib": Variant("django", disabled="user_tracking", baseline=True, env=_DJANGO),
    "django-ours-no-analytics": Variant("django", disabled="django", env=_DJANGO),
    "django-ours-default": Variant("django", disabled="django", analytics=True, env=_DJANGO),
    "django-ours-default+contrib": Variant("django", disabled="", analytics=True, env=_DJANGO),
}


def server_spans(receiver: OTLPReceiver) -> int:
    """How many SERVER spans reached the receiver (counted without decoding them further)."""
    return sum(
        1
        for request in receiver.export_requests()
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if span.kind == 2  # SPAN_KIND_SERVER
    )


def _environment(variant: Variant, database: Path, receiver: OTLPReceiver) -> dict[str, str]:
    """What ``opentelemetry-instrument`` sees for ``variant``."""
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("OTEL_")},
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": variant.disabled,
        "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}" if variant.analytics else "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_TRACES_EXPORTER": "otlp",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **variant.env,
    }


# The in-process driver: the app called as a WSGI server would, in bursts of 16 with 1 ms idle
# between them (as bench_cpu.py does: back to back, the niced analytics threads starve), then
# everything flushed; the CPU time of every thread of the process, per request.
_DRIVER = r"""
import importlib, io, json, os, sys, time
sys.path.insert(0, os.getcwd())
module, _, name = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), name)
count = int(sys.argv[2])
ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/7", "QUERY_STRING": "", "RAW_URI": "/users/7",
           "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
           "SERVER_PROTOCOL": "HTTP/1.1",
           "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": "127.0.0.1:8000",
           "HTTP_USER_AGENT": "wrk/4.2 Mozilla/5.0 Chrome/126", "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
           "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
           "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}

def serve(requests):
    for index in range(1, requests + 1):
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO()
        response = app(environ, lambda status, headers, exc_info=None: None)
        for _ in response:
            pass
        getattr(response, "close", lambda: None)()
        if index % 16 == 0:
            time.sleep(0.001)

def flush():
    from opentelemetry import trace
    from otel_user_tracking.analytics.processor import live_processors
    for processor in live_processors():
        processor.force_flush(60_000)
    getattr(trace.get_tracer_provider(), "force_flush", lambda timeout: None)(60_000)

def cpu():
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total

serve(1000)
flush()
before = cpu()
serve(count)
flush()
print(json.dumps({"cpu_us": (cpu() - before) / count * 1e6}))
"""


def in_process(name: str, workdir: Path, requests: int) -> float:
    """CPU µs per request of ``name``'s app called in-process under ``opentelemetry-instrument``."""
    variant = VARIANTS[name]
    database = workdir / f"{name}-in-process.db"
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.unlink(missing_ok=True)
    with OTLPReceiver() as receiver:
        cli = [str(BIN / "opentelemetry-instrument")] if variant.instrumented else []
        command = [
            *_pin(0),
            *cli,
            sys.executable,
            "-c",
            _DRIVER,
            SERVERS[variant.framework].wsgi_app,
            str(requests),
        ]
        done = subprocess.run(
            command,
            cwd=HERE,
            env=_environment(variant, database, receiver),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the in-process driver failed:\n{done.stderr}")
        spans = server_spans(receiver)
    if variant.instrumented and spans < requests:
        raise RuntimeError(f"{name}: {spans} server spans for {requests} requests")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["cpu_us"])


def server_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of process ``pid`` and its children (gunicorn's workers): their main threads
    (which serve the requests in a sync worker), and all their other threads."""
    threads = thread_cpu(pid)
    main = threads.pop(pid, 0.0)
    others = sum(threads.values())
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            child_main, child_others = server_cpu(int(child))
            main, others = main + child_main, others + child_others
    return main, others


@contextlib.contextmanager
def serve(
    name: str, variant: Variant, workdir: Path, receiver: OTLPReceiver
) -> Iterator[tuple[int, Path, int]]:
    """Run one variant's server under ``opentelemetry-instrument``; SIGTERM it at the end."""
    port = _free_port()
    database = workdir / f"{name}.db"
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.unlink(missing_ok=True)
    env = _environment(variant, database, receiver)
    server = [part.format(port=port) for part in SERVERS[variant.framework].command]
    cli = [str(BIN / "opentelemetry-instrument")] if variant.instrumented else []
    command = [*_pin(0), *cli, str(BIN / server[0]), *server[1:]]
    process = subprocess.Popen(
        command, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_until_listening(port, process)
        yield port, database, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if "Traceback" in stderr:
            raise RuntimeError(f"{name}: the server logged an error:\n{stderr}")


def run_variant(name: str, workdir: Path, duration: float, connections: int) -> Run:
    variant = VARIANTS[name]
    with OTLPReceiver() as receiver:
        with serve(name, variant, workdir, receiver) as (port, database, pid):
            warm = len(sequential(port, WARM_REQUESTS, 20))
            main_before, others_before = server_cpu(pid)
            requests, rps, p50, p99 = load(port, duration, connections)
            main_after, others_after = server_cpu(pid)
        spans = server_spans(receiver)
    served = requests + warm
    checked = f"{spans} server spans for {served} requests"
    if variant.instrumented and not served <= spans <= served + connections:
        raise RuntimeError(f"{name}: {checked}")
    if variant.analytics:
        with contextlib.closing(sqlite3.connect(database)) as db:
            rows = db.execute("SELECT COUNT(*) FROM events WHERE type = 'pageview'").fetchone()[0]
        if rows != spans:
            raise RuntimeError(f"{name}: {rows} pageviews in the store for {spans} server spans")
        checked += f", {rows} pageviews"
    per_request = 1e6 / max(requests, 1)
    main, others = (main_after - main_before) * per_request, (others_after - others_before) * per_request
    return Run(name, requests, rps, p50, p99, checked, main, others)


def report(runs: dict[str, list[Run]]) -> None:
    """Medians over rounds; ``ratio`` is req/s over the baseline's, ``cpu ratio`` the baseline's
    CPU per request over the variant's (``main``: the threads serving requests; ``other``: span
    export, analytics)."""

    def median(name: str, value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in runs[name])

    header = f"{'variant':<30} {'req/s':>8} {'ratio':>7} {'main us':>8} {'other us':>8} {'cpu ratio':>9}"
    print(header + f" {'p99 ms':>7}  req/s per round; checked")
    for name, rounds in runs.items():
        framework = VARIANTS[name].framework
        baseline = next((n for n, v in VARIANTS.items() if v.framework == framework and v.baseline), "")
        rps, main, others = median(name, _rps), median(name, _main), median(name, _others)
        ratio = cpu_ratio = float("nan")
        if baseline in runs:
            ratio = rps / median(baseline, _rps)
            cpu_ratio = (median(baseline, _main) + median(baseline, _others)) / (main + others)
        figures = f"{name:<30} {rps:>8.0f} {ratio:>6.3f}x {main:>8.0f} {others:>8.0f} {cpu_ratio:>8.3f}x"
        per_round = " ".join(f"{run.rps:.0f}" for run in rounds)
        print(f"{figures} {median(name, _p99):>7.2f}  {per_round}; {rounds[-1].check}")


def report_in_process(names: list[str], requests: int, rounds: int) -> None:
    """The CPU per request of each variant in-process: the best of ``rounds`` runs, and the ratio
    (the baseline's CPU over the variant's, which is the req/s ratio of a saturated worker)."""
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(rounds):
            order = names if round_number % 2 == 0 else list(reversed(names))
            for name in order:
                cpu = in_process(name, Path(tmp), requests)
                best[name] = min(best.get(name, cpu), cpu)
            print(f"round {round_number + 1}: " + ", ".join(f"{n} {best[n]:.1f}" for n in names))
    header = f"{'variant':<30} {'cpu us/req':>10} {'ratio':>7}"
    print(f"{header}  (in-process, {requests} requests, best of {rounds})")
    for name in names:
        framework = VARIANTS[name].framework
        baseline = next((n for n, v in VARIANTS.items() if v.framework == framework and v.baseline), "")
        ratio = best[baseline] / best[name] if baseline in best else float("nan")
        print(f"{name:<30} {best[name]:>10.1f} {ratio:>6.3f}x")


def _rps(run: Run) -> float:
    return run.rps


def _main(run: Run) -> float:
    return run.loop_us


def _others(run: Run) -> float:
    return run.others_us


def _p99(run: Run) -> float:
    return run.p99_ms


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="REQUESTS",
        default=0,
        help="instead of the socket runs, call each app this many times in-process (CPU time only)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not shutil.which("wrk"):
        print("wrk not found: the Python load generator is used (lower req/s for every variant)")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client, the receiver and their threads: off the server's core
    if args.in_process:
        report_in_process(names, args.in_process, args.rounds)
        return
    runs: dict[str, list[Run]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = names if round_number % 2 == 0 else list(reversed(names))
            for name in order:
                runs[name].append(run_variant(name, Path(tmp), args.duration, args.connections))
            print(f"round {round_number + 1}: " + ", ".join(f"{n} {runs[n][-1].rps:.0f}" for n in names))
    report(runs)


if __name__ == "__main__":
    main()

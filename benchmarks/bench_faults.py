"""Delivery under a dead backend: shutdown and exit times, and memory for a full queue.

Figures (each measured in a fresh subprocess, so one does not warm or bloat the next):

* ``shutdown()`` of an ``AnalyticsSpanProcessor`` with default settings whose PostHog sink
  points at a closed port, and at a server that accepts and never answers;
* interpreter exit through the ``atexit`` path (the SDK's provider shutdown) in both cases;
* a real uvicorn run by ``opentelemetry-instrument`` with default settings: seconds from
  SIGTERM to process exit, in both cases;
* resident memory growth after 200 000 spans ended into a dead sink with the default queue.

Run: ``python benchmarks/bench_faults.py [--spans 200000] [--skip-uvicorn]``. Every wait is
bounded; it prints one line per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
LIMIT = 60.0  # seconds any one measurement may take before it is reported as a failure

SPANS = textwrap.dedent(
    """
    import gc, os, resource, sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind
    import otel_user_tracking as out
    from otel_user_tracking import attributes as attrs
    from otel_user_tracking.analytics import devices


    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


    def spans(provider, count):
        tracer = provider.get_tracer("bench")
        for index in range(count):
            attributes = {
                attrs.REQUEST_TYPE: "http", "http.method": "GET", "http.scheme": "https",
                "http.target": f"/users/{index % 100}", "http.route": "/users/{id}",
                "http.url": f"https://shop.example/users/{index % 100}?utm_source=news",
                "http.status_code": 200,
                "http.user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
                attrs.HOST: "shop.example", attrs.LOCALE: "en-US",
                attrs.VISITOR_ID: f"{index % 997:016x}", "user.id": str(index % 300),
            }
            with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER, attributes=attributes):
                pass
    """
)

MEMORY = SPANS + textwrap.dedent(
    """
    url, count = sys.argv[1], int(sys.argv[2])
    provider = TracerProvider()
    processor = out.AnalyticsSpanProcessor(sinks=[out.sinks.PostHogSink("phc_bench", url=url, timeout=1.0)])
    provider.add_span_processor(processor)
    spans(provider, 200)  # warm: imports, first conversion, threads started
    processor.force_flush(100)
    devices.warm_up()  # ua-parser's rules (25-35 MB, once a process), whether or not converted yet
    gc.collect()
    before = rss_mb()
    spans(provider, count)
    processor.force_flush(2000)  # converted and queued (the sink stays dead)
    gc.collect()
    after = rss_mb()
    stats = next(iter(processor.stats().values()))
    print(after - before, stats.queued, stats.dropped, stats.failed, stats.enqueued)
    started = time.monotonic()
    processor.shutdown()
    print(time.monotonic() - started)
    os._exit(0)
    """
)

SHUTDOWN = SPANS + textwrap.dedent(
    """
    url, how = sys.argv[1], sys.argv[2]
    provider = TracerProvider()
    processor = out.AnalyticsSpanProcessor(sinks=[out.sinks.PostHogSink("phc_bench", url=url)])
    provider.add_span_processor(processor)
    spans(provider, 2000)
    processor.force_flush(300)  # the sender is now inside a request or a backoff
    if how == "direct":
        started = time.monotonic()
        processor.shutdown()
        print(time.monotonic() - started, flush=True)
        os._exit(0)
    import opentelemetry.trace
    opentelemetry.trace.set_tracer_provider(provider)  # its atexit hook shuts it down
    print(time.monotonic(), flush=True)  # the parent measures until the process is gone
    """
)

APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route


    async def page(request):
        return PlainTextResponse("ok")


    app = Starlette(routes=[Route("/p", page)])
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that accepts connections and reads, but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(1)
        for sock in held:
            sock.close()
        listener.close()


def env(**extra: str) -> dict[str, str]:
    base = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    base["PATH"] = os.pathsep.join([str(VENV_BIN), base.get("PATH", "")])
    base["PYTHONPATH"] = str(ROOT)
    base.update(extra)
    return base


def run_python(code: str, *args: str) -> tuple[str, str, float]:
    """Run ``code``; returns its stdout, its stderr and the wall time until the process was gone."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=LIMIT, env=env()
    )
    ended = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout, done.stderr, ended - started


def memory(spans: int) -> dict[str, float]:
    with silent_server() as url:
        output, errors, _ = run_python(MEMORY, url, str(spans))
    first, second = output.strip().splitlines()
    growth, queued, dropped, failed, enqueued = (float(x) for x in first.split())
    return {
        "rss_growth_mb": round(growth, 1),
        "queued": queued,
        "dropped": dropped,
        "failed": failed,
        "enqueued": enqueued,
        "shutdown_s": round(float(second), 2),
        "log_lines": len(errors.splitlines()),  # our warnings, throttled; nothing else writes there
    }


def shutdown_direct(url: str) -> float:
    output, _, _ = run_python(SHUTDOWN, url, "direct")
    return round(float(output.strip()), 2)


def atexit_exit(url: str) -> float:
    process = subprocess.Popen(
        [sys.executable, "-c", SHUTDOWN, url, "atexit"], stdout=subprocess.PIPE, text=True, env=env()
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed just before the interpreter starts to exit
    process.wait(LIMIT)
    return round(time.monotonic() - float(line), 2) if line else float("nan")


def uvicorn_sigterm(url: str, workdir: Path, requests: int = 200) -> float:
    """Seconds from SIGTERM to exit of uvicorn under opentelemetry-instrument, defaults otherwise."""
    port = free_port()
    sink = "posthog+" + url.replace("http://", "http://phc_bench@")
    command = [
        str(VENV_BIN / "opentelemetry-instrument"),
        "--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none",
        "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    (workdir / "app.py").write_text(APP)
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env(OTEL_PYTHON_USER_TRACKING_SINKS=sink),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.05)
        for _ in range(requests):
            connection.sendall(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
            assert connection.recv(4096)
        connection.close()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(LIMIT)
        return round(time.monotonic() - started, 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--skip-uvicorn", action="store_true")
    options = parser.parse_args()
    figures: dict[str, object] = {"memory": memory(options.spans)}
    for backend in ("closed port", "never answers"):
        with silent_server() as silent:
            url = closed_url() if backend == "closed port" else silent
            row: dict[str, float] = {
                "shutdown_direct_s": shutdown_direct(url),
                "atexit_exit_s": atexit_exit(url),
            }
            if not options.skip_uvicorn:
                with tempfile.TemporaryDirectory() as workdir:
                    row["uvicorn_sigterm_exit_s"] = uvicorn_sigterm(url, Path(workdir))
        figures[backend] = row
    for name, value in figures.items():
        print(f"{name}: {json.dumps(value)}")


if __name__ == "__main__":
    main()

"""Real Jaeger v2 and Collector processes on loopback for the ``test_collector_*`` tests.

Usage::

    jaeger_bin, otelcol_bin = require_binaries()     # skips (or fails in CI) when not built
    with GoProcess.jaeger(jaeger_bin, tmp_path) as jaeger:
        env = {"OTELCOL_JAEGER_ENDPOINT": jaeger.otlp_grpc, ...}
        with GoProcess.collector(otelcol_bin, tmp_path, "otelcol.yaml", env=env) as collector:
            ...
        query = JaegerQuery(jaeger.query_url)
        traces = query.wait_for_traces("demo-shop", count=15)

The binaries come from ``collector-config/build.sh``. Every process binds to ports picked
here, is waited on with a deadline and is stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar
from unittest import mock

import pytest

from examples import demo_requests

from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "collector-config"
BIN_DIR = Path(
    os.environ.get("OTEL_USER_TRACKING_BIN_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-user-tracking" / "bin"
)
JAEGER_BIN = BIN_DIR / "jaeger"
OTELCOL_BIN = BIN_DIR / "otelcol-user-tracking"
# Set by .ci/run: a binary that is not there fails the test instead of skipping it.
REQUIRE_VARIABLE = "OTEL_USER_TRACKING_REQUIRE_COLLECTOR"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DATA_TIMEOUT = 30.0

T = TypeVar("T")


def require_binaries() -> tuple[Path, Path]:
    """The Jaeger and Collector binaries; skip, or fail under ``REQUIRE_VARIABLE=1``, if absent."""
    missing = [path.name for path in (JAEGER_BIN, OTELCOL_BIN) if not os.access(path, os.X_OK)]
    if missing:
        message = (
            f"{' and '.join(missing)} not built in {BIN_DIR}: run `bash collector-config/build.sh` "
            "(needs Go >= 1.24 and the Go module proxy; about 6 minutes the first time)"
        )
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return JAEGER_BIN, OTELCOL_BIN


def wait_until(check: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    """Call ``check`` until it returns something other than None, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(0.2)  # another process's progress: nothing to wait on but time


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _answers_200(url: str) -> Optional[bool]:
    try:
        return True if http_get(url, timeout=1.0)[0] == 200 else None
    except OSError:
        return None


class GoProcess:
    """Jaeger or a Collector as a subprocess, ready once its health endpoint answers 200.

    Args:
        command: The full command line.
        health_url: Polled after the start until it answers 200.
        env: Variables added to the current environment.
        log_path: Where stdout and stderr go (read it with ``.log``).
    """

    def __init__(
        self, command: Sequence[str], health_url: str, env: Mapping[str, str], log_path: Path
    ) -> None:
        self.command = list(command)
        self.health_url = health_url
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.ports: dict[str, str] = dict(env)
        self.process: Optional[subprocess.Popen[bytes]] = None

    @classmethod
    def jaeger(cls, binary: Path, log_dir: Path, host: str = "127.0.0.1") -> GoProcess:
        """Jaeger with ``collector-config/jaeger.yaml``, every endpoint on a free port of ``host``."""
        names = ("OTLP_GRPC", "OTLP_HTTP", "QUERY_HTTP", "QUERY_GRPC", "HEALTH")
        env = {f"JAEGER_{name}_ENDPOINT": f"{host}:{free_port(host)}" for name in names}
        env.update(JAEGER_TELEMETRY_HOST=host, JAEGER_TELEMETRY_PORT=str(free_port(host)))
        command = [str(binary), "--config", str(CONFIG_DIR / "jaeger.yaml")]
        health = f"http://{env['JAEGER_HEALTH_ENDPOINT']}/status"
        return cls(command, health, env, log_dir / f"jaeger-{host}.log")

    @classmethod
    def collector(
        cls,
        binary: Path,
        log_dir: Path,
        config: str,
        env: Mapping[str, str],
        host: str = "127.0.0.1",
        overlays: Sequence[Path] = (),
        name: str = "",
    ) -> GoProcess:
        """A Collector with ``collector-config/<config>`` (plus ``overlays``, merged after it).

        Its receivers, health check and own metrics listen on free ports of ``host``; ``env``
        sets the rest (and may override those). ``name`` names its log file.
        """
        ports = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"{host}:{free_port(host)}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{host}:{free_port(host)}",
            "OTELCOL_HEALTH_ENDPOINT": f"{host}:{free_port(host)}",
            "OTELCOL_TELEMETRY_HOST": host,
            "OTELCOL_TELEMETRY_PORT": str(free_port(host)),
        }
        full_env = {**ports, **env}
        configs = [f"--config=file:{CONFIG_DIR / config}", *(f"--config=file:{path}" for path in overlays)]
        health = f"http://{full_env['OTELCOL_HEALTH_ENDPOINT']}/"
        log_path = log_dir / f"{name or config.removesuffix('.yaml')}-{host}.log"
        return cls([str(binary), *configs], health, full_env, log_path)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def endpoint(self, variable: str) -> str:
        return self.ports[variable]

    def start(self, timeout: float = START_TIMEOUT) -> GoProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while _answers_200(self.health_url) is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with {self.process.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.health_url} not healthy within {timeout}s:\n{self.log}")
            time.sleep(0.1)  # the process is starting: nothing to wait on but time
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM to the process's PID, SIGKILL if it is still there after ``timeout`` s."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            return process.wait(timeout=timeout)

    def __enter__(self) -> GoProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class JaegerQuery:
    """Jaeger's HTTP query API (the one its UI uses): ``/api/services``, ``/api/traces``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = http_get(self.base_url + path + query)
        return status, json.loads(body) if body else None

    def services(self) -> list[str]:
        return list(self._get("/api/services")[1]["data"] or [])

    def traces(self, service: str, tags: Optional[Mapping[str, str]] = None, limit: int = 1000) -> list[Any]:
        params = {"service": service, "limit": str(limit), "lookback": "1h"}
        if tags:
            params["tags"] = json.dumps(dict(tags))
        return list(self._get("/api/traces", **params)[1]["data"] or [])

    def trace(self, trace_id: str) -> Optional[Any]:
        status, body = self._get(f"/api/traces/{trace_id}")
        return body["data"][0] if status == 200 and body and body.get("data") else None

    def wait_for_traces(self, service: str, count: int, timeout: float = DATA_TIMEOUT) -> list[Any]:
        """The service's traces once there are ``count`` and their span total held for one poll."""
        last_total = [-1]

        def complete() -> Optional[list[Any]]:
            found = self.traces(service) if service in self.services() else []
            total = sum(len(trace["spans"]) for trace in found)
            settled, last_total[0] = total == last_total[0], total
            return found if len(found) >= count and settled else None

        return wait_until(complete, timeout, f"{count} traces of {service} in Jaeger")


def tags(span: Any) -> dict[str, Any]:
    """A Jaeger span's tags as a dict."""
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def server_spans(trace: Any) -> list[Any]:
    return [span for span in trace["spans"] if tags(span).get("span.kind") == "server"]


def every_value(trace: Any) -> Iterator[str]:
    """Every tag, log field and process tag value of a Jaeger trace, as text."""
    for span in trace["spans"]:
        yield span["operationName"]
        for tag in span["tags"]:
            yield str(tag["value"])
        for log in span["logs"]:
            for field in log["fields"]:
                yield str(field["value"])
    for process in trace["processes"].values():
        for tag in process["tags"]:
            yield str(tag["value"])


def _exported(path: Path, signal: str, items: str) -> list[dict[str, Any]]:
    """What a Collector's ``file`` exporter wrote (OTLP JSON, one request a line), flattened."""
    found: list[dict[str, Any]] = []
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        for resource in json.loads(line).get(f"resource{signal}", []):
            for scope in resource.get(f"scope{signal}", []):
                found.extend(scope.get(items, []))
    return found


def exported_log_records(path: Path) -> list[dict[str, Any]]:
    """The log records a Collector's ``file`` exporter wrote."""
    return _exported(path, "Logs", "logRecords")


def exported_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a Collector's ``file`` exporter wrote."""
    return _exported(path, "Spans", "spans")


def otlp_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """OTLP JSON attributes (``[{"key", "value": {"stringValue": ...}}]``) as a dict."""
    result: dict[str, Any] = {}
    for attribute in item.get("attributes", []):
        value = attribute["value"]
        result[attribute["key"]] = next(iter(value.values()), None) if value else None
    return result


DEMO_INSTRUMENT = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]


def serve_demo(collector: GoProcess, service: str, sinks: str, log_dir: Path) -> UvicornServer:
    """The example shop under ``opentelemetry-instrument``, exporting to ``collector``, sent the
    demo's traffic, then stopped; returns the stopped ``UvicornServer`` (its output).

    Every demo request leaves from ``CLIENT_HOST``, so its raw address can be searched for.
    """
    env = {
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.endpoint('OTELCOL_OTLP_HTTP_ENDPOINT')}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_PYTHON_USER_TRACKING_SINKS": sinks,
        "OTEL_PYTHON_USER_TRACKING_HASH_KEY": "collector-test-key-e2e",  # the example needs one
    }
    server = UvicornServer(
        "examples.fastapi_app:app",
        cwd=ROOT,
        env=env,
        host=SERVER_HOST,
        instrument=DEMO_INSTRUMENT,
        log_dir=log_dir,
    )
    server.start()
    from_client = functools.partial(http.client.HTTPConnection, source_address=(CLIENT_HOST, 0))
    try:
        with mock.patch("http.client.HTTPConnection", from_client):
            demo_requests.main(server.url)
    finally:
        server.stop()
    return server

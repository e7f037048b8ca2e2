"""A real server (``uvicorn`` by default) in a subprocess, optionally under the real
``opentelemetry-instrument`` CLI.

Usage::

    with uvicorn_server("app:app", cwd=tmp_path, env=env, host=SERVER_HOST,
                        instrument=["--traces_exporter", "console"]) as server:
        status, headers, body = request("GET", server.url + "/", source_address=CLIENT_HOST)
    print(server.stdout)  # complete once the block has stopped the server

Any other server runs the same way from its command line, with ``{host}`` and ``{port}``
filled in: ``uvicorn_server("", cwd=..., command=["gunicorn", "-b", "{host}:{port}", "app:app"])``.

The whole loopback range is local, so binding the server to 127.0.0.2 and connecting from
127.0.0.3 lets a test tell the client's address apart from the server's in exported data.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

VENV_BIN = Path(sys.executable).parent
SERVER_HOST = "127.0.0.2"
CLIENT_HOST = "127.0.0.3"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class ServerExited(RuntimeError):
    """The server process exited before it accepted connections."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"server exited with {returncode} before accepting connections; stderr:\n{stderr}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def free_port(host: str) -> int:
    """A port of ``host`` that nothing listens on, for a server started a moment later.

    Taken below the kernel's ephemeral range, not from ``bind(host, 0)``: a port from that
    range can be given to any outgoing connection (a test's client, another test's server
    talking to its exporter) between this call and the server's own bind, and then the
    server fails with "address already in use" (a Collector of the scale-out tests once did).
    Outgoing connections never get a port below the range; ports handed out here are not
    handed out twice.
    """
    low, high = _FREE_PORTS
    for _ in range(100 if high > low else 0):
        port = _random.randint(low, high)
        if (host, port) in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add((host, port))
        return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's choice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ports_below_ephemeral() -> tuple[int, int]:
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default; elsewhere a guess, and the fallback stays correct
    return 20000, first - 1


_FREE_PORTS = _ports_below_ephemeral()
_handed_out: set[tuple[str, int]] = set()
_random = random.Random()


def base_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The current environment without OTEL_* variables, the venv first on PATH, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class UvicornServer:
    """One uvicorn process; its output goes to files so it can never block on a full pipe.

    Usage: ``server = UvicornServer("app:app", cwd=tmp_path, instrument=[]).start()``, then
    ``server.stop()``; or the ``uvicorn_server(...)`` context manager.

    Args:
        app: The ``module:attribute`` uvicorn imports from ``cwd``.
        cwd: Working directory, e.g. a tmp dir holding the app file.
        env: Variables added to ``base_env()``.
        host: Address uvicorn binds.
        port: Port uvicorn binds; a free one when None.
        instrument: Options for ``opentelemetry-instrument`` (possibly empty) to run uvicorn
            under the CLI; None runs uvicorn directly.
        uvicorn_args: Extra uvicorn options.
        command: Another server's command line instead of uvicorn's (``app`` and
            ``uvicorn_args`` are then unused): its program from the venv, ``{host}`` and
            ``{port}`` in its arguments filled in.
        log_dir: Where the captured stdout/stderr files go; ``cwd`` when None.
    """

    def __init__(
        self,
        app: str,
        *,
        cwd: Union[str, Path],
        env: Optional[Mapping[str, str]] = None,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        instrument: Optional[Sequence[str]] = None,
        uvicorn_args: Sequence[str] = (),
        command: Optional[Sequence[str]] = None,
        log_dir: Optional[Union[str, Path]] = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cwd = Path(cwd)
        if command is None:
            server = ["uvicorn", app, "--host", host, "--port", str(self.port), *uvicorn_args]
        else:
            server = [part.format(host=host, port=self.port) for part in command]
        program = VENV_BIN / server[0]
        server[0] = str(program) if program.exists() else server[0]
        if instrument is None:
            self.command = server
        else:
            self.command = [str(VENV_BIN / "opentelemetry-instrument"), *instrument, *server]
        self.env = base_env(env)
        logs = Path(log_dir) if log_dir is not None else self.cwd
        self._stdout_path = logs / f"uvicorn-{self.port}.stdout"
        self._stderr_path = logs / f"uvicorn-{self.port}.stderr"
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stdout(self) -> str:
        return self._stdout_path.read_text(errors="replace") if self._stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""

    @property
    def returncode(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    def start(self, timeout: float = START_TIMEOUT) -> UvicornServer:
        """Start the process and return once it accepts TCP connections.

        Raises ServerExited (with the captured output) if the process ends first, and
        TimeoutError if it neither listens nor exits within ``timeout`` seconds.
        """
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return self
            except OSError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise TimeoutError(f"uvicorn did not listen within {timeout}s; stderr:\n{self.stderr}")
            try:
                # Waiting on the process paces the retries and notices an early exit at once.
                returncode = self.process.wait(timeout=min(0.05, remaining))
            except subprocess.TimeoutExpired:
                continue
            raise ServerExited(returncode, self.stdout, self.stderr)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """Send ``sig``, then wait up to ``timeout`` seconds (SIGKILL after); returns the exit code.

        uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies by the
        signal and interpreter exit handlers (the SDK's own flush) do not run; after SIGINT
        it exits normally and they do.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
                raise TimeoutError(
                    f"uvicorn did not stop within {timeout}s of SIGTERM; stderr:\n{self.stderr}"
                ) from None
        return process.returncode


def app_with_store(tmp_path: Path, source: str, **env: str) -> tuple[Path, dict[str, str]]:
    """Write ``source`` as ``tmp_path/app.py``; its store, and the env making that the only sink."""
    (tmp_path / "app.py").write_text(source)
    database = tmp_path / "analytics.db"
    return database, {"OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}", **env}


@contextlib.contextmanager
def uvicorn_server(app: str, **options: Any) -> Iterator[UvicornServer]:
    """A started ``UvicornServer`` (see its arguments), stopped when the block ends.

    The captured output stays readable after the block.
    """
    server = UvicornServer(app, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(
    method: str,
    url: str,
    headers: Optional[Mapping[str, str]] = None,
    source_address: Optional[str] = None,
    body: Optional[bytes] = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with http.client, optionally from a given local address.

    Returns the status, the response headers (lower-cased names) and the body.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    connection = http.client.HTTPConnection(
        parts.hostname,
        parts.port,
        timeout=timeout,
        source_address=None if source_address is None else (source_address, 0),
    )
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, data
    finally:
        connection.close()

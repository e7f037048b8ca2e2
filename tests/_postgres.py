"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary directory.

The server listens on a free loopback port and takes password logins over TCP (the URL
holds a password, so the tests can prove it never leaks). PostgreSQL refuses to run as
root: under root the server runs as the ``postgres`` (or ``nobody``) user, its directory
owned by it. Missing binaries skip the tests, unless ``OTEL_USER_TRACKING_REQUIRE_POSTGRES``
is set (CI installs the ``postgresql`` package), when they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

REQUIRE_VARIABLE = "OTEL_USER_TRACKING_REQUIRE_POSTGRES"
BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
USER = "otel"
PASSWORD = "pg-s3cret-Pa55"  # searched for in logs, names and errors: it must never appear


def bin_dir() -> Optional[Path]:
    for directory in BIN_DIRS:
        if (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE):
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} is set: CI installs the postgresql package)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> Optional[str]:
    """The user the server runs as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL as")


class PostgresServer:
    """One server for the session; ``database()`` makes a fresh database per test."""

    def __init__(self, binaries: Path, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = free_port()
        self.user = _run_as()
        self._databases = 0

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, *args]

    def _run(self, *args: str) -> None:
        subprocess.run(self._command(*args), check=True, capture_output=True, timeout=120)

    def initdb(self) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        password_file = self.directory / "pw"
        password_file.write_text(PASSWORD)
        if self.user:
            os.chown(password_file, pwd.getpwnam(self.user).pw_uid, -1)
        self._run(
            str(self.binaries / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C",
            "--no-sync",
        )
        password_file.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "fsync": "off",  # a test server: durability of the machine is not what is tested
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "max_connections": "100",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        pg_ctl = str(self.binaries / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "restart")

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def database(self) -> str:
        """A new, empty database; its URL (with the password)."""
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with contextlib.closing(self.admin()) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _has_c_utf8() -> bool:
    result = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    return any(line.strip().lower() in ("c.utf8", "c.utf-8") for line in result.stdout.splitlines())


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a server (or skip/fail, see the module docstring); stopped and removed afterwards."""
    binaries = bin_dir()
    if binaries is None:
        skip_or_fail("PostgreSQL is not installed (initdb/pg_ctl)")
        raise AssertionError("unreachable")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install -e '.[test]')")
    directory = Path(tempfile.mkdtemp(prefix="otel-pg-"))
    os.chmod(directory, 0o755)
    server = PostgresServer(binaries, directory)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)

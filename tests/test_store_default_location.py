"""Where the implicit default store goes: a read-only working directory never stops the app's start.

The app runs under the real ``opentelemetry-instrument`` in a working directory made
read-only by a read-only bind mount in a private mount namespace (``unshare -m``; root
ignores ``chmod``), as a container with a read-only root file system would have it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import textwrap
from pathlib import Path
from typing import Optional

import pytest

from otel_user_tracking.env import sinks_setting
from otel_user_tracking.sinks import SQLiteSink, sinks_from_env

from ._uvicorn import VENV_BIN, base_env

APP = textwrap.dedent(
    """
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route


    async def page(request):
        return PlainTextResponse("ok")


    app = Starlette(routes=[Route("/hello", page)])


    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/hello", headers={"user-agent": "Mozilla/5.0"})
            print("served", response.status_code)


    try:
        open("probe", "w")
    except OSError:
        print("the working directory is read-only")
    asyncio.run(main())
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]
# $1: the directory made read-only; the rest: the command, run in it.
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && cd "$1" && shift && exec "$@"'


def _read_only_mounts_work(directory: Path) -> Optional[str]:
    """None when this machine can make a read-only bind mount, else why not."""
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(directory), "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        return f"no unshare here ({exc})"
    return None if done.returncode == 0 else f"no read-only bind mount here: {done.stderr.strip()}"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "app.py").write_text(APP)
    reason = _read_only_mounts_work(directory)
    if reason is not None:
        pytest.skip(reason)
    return directory


def _run_read_only(
    directory: Path, *, instrumented: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [str(VENV_BIN / "opentelemetry-instrument"), *CLI] if instrumented else []
    return subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            READ_ONLY,
            "sh",
            str(directory),
            *command,
            str(VENV_BIN / "python"),
            "app.py",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(env),
    )


def _pageviews(database: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT type, page FROM events").fetchall()


def test_a_read_only_working_directory_sends_the_default_store_to_the_state_directory(
    app_dir: Path, tmp_path: Path
) -> None:
    """The app starts as uninstrumented; its events go to the user's state directory, said in one line."""
    home = tmp_path / "home"
    bare = _run_read_only(app_dir, instrumented=False, HOME=str(home))
    assert bare.returncode == 0 and "read-only" in bare.stdout, bare.stderr
    done = _run_read_only(app_dir, HOME=str(home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the working directory is read-only", "served 200"]
    [store] = (home / ".local" / "state" / "otel-user-tracking").glob("app-*.db")
    [line] = done.stderr.splitlines()
    assert "OTEL_PYTHON_USER_TRACKING_SINKS=" in line and str(store) in line
    assert _pageviews(store) == [("pageview", "/hello")]


def test_with_no_writable_place_analytics_are_off_and_the_app_starts(app_dir: Path) -> None:
    """Home read-only too: the app starts and serves; one line says analytics are off and what to set."""
    done = _run_read_only(app_dir, HOME=str(app_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the working directory is read-only", "served 200"]
    [line] = done.stderr.splitlines()
    assert "analytics are off" in line and "OTEL_PYTHON_USER_TRACKING_SINKS=" in line


def test_an_explicit_store_in_a_read_only_directory_stops_the_start(app_dir: Path, tmp_path: Path) -> None:
    """A store the user chose that cannot be written stops the start, naming the variable to fix."""
    done = _run_read_only(
        app_dir, HOME=str(tmp_path), OTEL_PYTHON_USER_TRACKING_SINKS="sqlite:///./chosen.db"
    )
    assert done.returncode == 2 and "served" not in done.stdout
    assert "chosen.db" in done.stderr and "OTEL_PYTHON_USER_TRACKING_SINKS" in done.stderr


def test_a_writable_working_directory_keeps_the_default_store_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the variable unset and a writable directory the store is ./otel-user-tracking.db, silently."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_PYTHON_USER_TRACKING_SINKS", raising=False)
    [sink] = sinks_from_env(sinks_setting())
    sink.close()
    assert isinstance(sink, SQLiteSink) and sink.path == Path("otel-user-tracking.db")
    assert (tmp_path / "otel-user-tracking.db").is_file() and not caplog.records

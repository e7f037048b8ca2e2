"""The Django example (examples/django_project) does what docs/getting-started/django.md says."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ._uvicorn import UvicornServer, base_env, request

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_project"
CONSOLE_CLI = ["--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none"]
COMMANDS = {  # the commands of docs/getting-started/django.md
    "uvicorn": ["uvicorn", "bookshop.asgi:application", "--host", "{host}", "--port", "{port}"],
    "gunicorn": ["gunicorn", "--bind", "{host}:{port}", "bookshop.wsgi"],
    "runserver": ["python", "manage.py", "runserver", "--noreload", "{host}:{port}"],
}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    return dict(re.findall(r"(csrftoken|sessionid)=([^;]+)", headers.get("set-cookie", "")))


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _server_spans(stdout: str) -> list[dict[str, object]]:
    """The SERVER spans the console exporter printed (one JSON object per span)."""
    spans = [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", stdout, re.S | re.M)]
    return [span for span in spans if span.get("kind") == "SpanKind.SERVER"]


@pytest.mark.parametrize("server", sorted(COMMANDS))
def test_django_example_names_the_reader_who_logged_in(tmp_path: Path, server: str) -> None:
    """After a login through Django's LoginView the book page's span names jane and its route."""
    env = {
        "BOOKSHOP_DB": str(tmp_path / "bookshop.sqlite3"),
        "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{tmp_path / 'analytics.db'}",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "django",
    }
    for command in (["migrate", "--verbosity", "0"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=EXAMPLE, env=base_env(env), check=True, timeout=60
        )
    running = UvicornServer(
        "", cwd=EXAMPLE, env=env, instrument=CONSOLE_CLI, command=COMMANDS[server], log_dir=tmp_path
    ).start()
    try:
        _, headers, page = request("GET", running.url + "/accounts/login/")
        cookies = _cookies(headers)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None, page
        form = b"username=jane&password=correct+horse+battery&csrfmiddlewaretoken=" + token.group(1)
        login_headers = {
            "Cookie": _cookie_header(cookies),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        status, headers, _ = request("POST", running.url + "/accounts/login/", login_headers, body=form)
        assert status == 302, running.stderr
        cookies.update(_cookies(headers))
        status, _, body = request("GET", running.url + "/books/1/", {"Cookie": _cookie_header(cookies)})
        assert status == 200 and b"jane" in body, body
    finally:
        running.stop(signal.SIGTERM)
    [book] = [span for span in _server_spans(running.stdout) if span["name"] == "GET books/<int:pk>/"]
    attributes = book["attributes"]
    assert isinstance(attributes, dict)
    assert (attributes.get("user.name"), attributes.get("user.id")) == ("jane", "1"), attributes

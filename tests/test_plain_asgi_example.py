"""examples/plain_asgi.py, run as its docstring says: plain uvicorn, the SDK and policy in code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._cli import report_json
from ._uvicorn import CLIENT_HOST, SERVER_HOST, request, uvicorn_server

ROOT = Path(__file__).resolve().parent.parent
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
ANN = {**BROWSER, "Authorization": "Bearer token-ann"}


def console_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects ConsoleSpanExporter printed, in order."""
    decoder, spans, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        span, end = decoder.raw_decode(text, position)
        spans.append(span)
        position = text.find("{", end)
    return spans


def test_plain_asgi_example_tags_users_by_its_policy_and_feeds_the_store(tmp_path: Path) -> None:
    """Masked email, anonymized address, one exception event, and a pageview per request."""
    store = tmp_path / "plain.db"
    env = {"PLAIN_ASGI_STORE": str(store), "PYTHONPATH": str(ROOT)}
    with uvicorn_server("examples.plain_asgi:application", cwd=tmp_path, env=env, host=SERVER_HOST) as server:
        calls = [("/", BROWSER, 200), ("/me", BROWSER, 401), ("/me", ANN, 200), ("/boom", ANN, 500)]
        for path, headers, expected in calls:
            assert (
                request("GET", server.url + path, headers=headers, source_address=CLIENT_HOST)[0] == expected
            )
    assert server.returncode is not None
    exported = console_spans(server.stdout)
    spans = {span["name"]: span for span in exported if span["kind"] == "SpanKind.SERVER"}
    me, boom = spans["GET /me"]["attributes"], spans["GET /boom"]
    assert (me["user.id"], me["user.name"], me["user.email"], me["user.roles"]) == (
        "u-1",
        "Ann Lee",
        "a***@example.com",
        ["editor"],
    )
    assert me["client.address"] == "127.0.0.0" and CLIENT_HOST not in json.dumps(exported)
    assert [event["name"] for event in boom["events"]] == ["exception"]
    assert boom["status"]["status_code"] == "ERROR"
    totals = report_json(store)
    assert (totals["pageviews"], totals["errors"]) == (4, 1)

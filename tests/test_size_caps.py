"""Size caps where values enter: ``track()`` meta and ``set_user()`` values are bounded, counted, logged once.

A handler that passes megabytes must not make a megabyte span, event or stored row, and
must not get an exception for it: what is over a cap is cut or dropped, counted by kind in
``out.cut_counts()`` and logged once per kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

import otel_user_tracking as out
from otel_user_tracking import _limits

from ._apps import Analytics, get, instrumented, instrumented_analytics, new_tracing

MB = 1024 * 1024


@pytest.fixture
def analytics() -> Iterator[Analytics]:
    with instrumented_analytics() as setup:
        yield setup


def _tracking_app(meta: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/track")
    def tracked() -> dict[str, bool]:
        out.track("BIG", meta=meta)
        return {"ok": True}

    return app


def _span_event_size(analytics: Analytics) -> int:
    [event] = [event for event in analytics.tracing.server_span("/track").events if event.name == "BIG"]
    return sum(len(str(key)) + len(str(value)) for key, value in (event.attributes or {}).items())


def test_twenty_5mb_meta_values_make_a_small_span_event_and_custom_event(analytics: Analytics) -> None:
    """20 meta values of 5 MB become at most 32 KiB in all, each cut with a marker; no exception."""
    meta = {f"k{index}": str(index) * (5 * MB) for index in range(20)}
    assert get(_tracking_app(meta), "/track").status_code == 200
    assert _span_event_size(analytics) < _limits.MAX_META_TOTAL_CHARS + 1024
    [event] = analytics.events("custom")
    assert len(event.meta_json or "") < _limits.MAX_META_TOTAL_CHARS + 1024
    assert all(str(value).endswith("characters cut]") for value in event.meta.values())
    counts = out.cut_counts()
    assert counts["meta.value"] >= 7 and counts["meta.total"] >= 12


def test_too_many_keys_and_long_keys_are_dropped_not_raised(analytics: Analytics) -> None:
    """Past 100 keys the rest are dropped, and so is a key over 128 characters; the call returns."""
    meta: dict[str, Any] = {"x" * 500: 1, **{f"k{index:03}": index for index in range(150)}}
    assert get(_tracking_app(meta), "/track").status_code == 200
    [event] = analytics.events("custom")
    assert sorted(event.meta) == [f"k{index:03}" for index in range(100)]
    assert out.cut_counts() == {"meta.key": 1, "meta.keys": 50}


@pytest.mark.parametrize(
    ("name", "meta", "message"),
    [
        ("x" * 257, None, "1 to 256"),
        ("OK", {"": 1}, "non-empty strings"),
        ("OK", {"nested": {"a": 1}}, "use str, int, float or bool"),
        ("OK", {"n": float("nan")}, "finite"),
    ],
)
def test_track_still_raises_for_a_malformed_name_or_meta(name: str, meta: Any, message: str) -> None:
    """The documented contract holds: a malformed name or meta raises ValueError at the call."""
    with pytest.raises(ValueError, match=message):
        out.track(name, meta=meta)


def test_a_cut_is_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    """Three over-size values log one warning that names the kind and none of the content."""
    with caplog.at_level(logging.WARNING, logger="otel_user_tracking"):
        for _ in range(3):
            out.track("BIG", meta={"secret-ish": "s3cr3t" * MB})
    records = [record for record in caplog.records if "size cap" in record.getMessage()]
    assert len(records) == 1 and "meta.value" in records[0].getMessage()
    assert "s3cr3t" not in caplog.text
    assert out.cut_counts()["meta.value"] == 3


def test_set_user_values_are_capped_and_counted() -> None:
    """A 5 MB email or name from set_user is exported as at most 1024 characters, and counted; an
    extra field's 1 MB value is cut to 256 (and, unnamed by the policy, not exported)."""
    tracing = new_tracing()
    app = FastAPI()

    @app.get("/me")
    def me() -> dict[str, bool]:
        out.set_user(id="u-1", name="N" * (5 * MB), email="e" * (5 * MB) + "@example.com", extra="z" * MB)
        return {"ok": True}

    with instrumented(tracing):
        assert get(app, "/me").status_code == 200
    attributes = tracing.server_span("/me").attributes
    assert len(str(attributes["user.name"])) == 1024 and len(str(attributes["user.email"])) == 1024
    assert not any("zzz" in str(value) for value in attributes.values())
    assert out.cut_counts() == {"user.value": 2, "user.extra.value": 1}

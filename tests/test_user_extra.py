"""Extra user fields: ``set_user(**extra)`` and user mappings as ``user.<name>`` under the TagPolicy."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_user_tracking as out
from otel_user_tracking import testing
from otel_user_tracking.env import policy_from_env
from otel_user_tracking.sinks.memory import InMemorySink
from otel_user_tracking.sinks.otlp import attributes_of
from otel_user_tracking.sinks.posthog import to_posthog
from otel_user_tracking.sinks.segment import to_segment

from ._asgi import http_scope, serve

KEY = "extra-fields-test-key-0123"


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _handler_app(handler: Callable[[], None]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        handler()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _span_attributes(app: Any, policy: out.TagPolicy, **options: Any) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    serve(
        out.UserTrackingMiddleware(app, tracer_provider=provider, tag_policy=policy, **options), http_scope()
    )
    (span,) = exporter.get_finished_spans()
    return dict(span.attributes or {})


def _set_user(**values: Any) -> Any:
    return _handler_app(lambda: out.set_user(id="u-1", **values))


def test_set_user_extras_are_exported_in_the_mode_the_policy_names() -> None:
    """keep keeps the value (and its type), hash HMACs its text, mask masks it, drop drops it."""
    policy = out.TagPolicy(
        extra={
            "plan": "keep",
            "org_id": "hash",
            "company": "mask",
            "seats": "keep",
            "beta": "keep",
            "x": "drop",
        },
        hash_key=KEY,
    )
    app = _set_user(plan="pro", org_id=1234, company="Acme Corp", seats=12, beta=True, x="gone")
    attributes = _span_attributes(app, policy)
    extras = {key: value for key, value in attributes.items() if key.startswith("user.") and key != "user.id"}
    assert extras == {
        "user.plan": "pro",
        "user.org_id": _hmac("1234"),
        "user.company": "A***",
        "user.seats": 12,
        "user.beta": True,
    }


def test_an_extra_the_policy_does_not_name_is_dropped_unless_extra_default_allows_it() -> None:
    """By default an unnamed extra never reaches the span; extra_default="keep" or "hash" lets it out so."""
    app = _set_user(plan="pro", team="blue")
    dropped = _span_attributes(app, out.TagPolicy(extra={"plan": "keep"}))
    assert dropped["user.plan"] == "pro" and "user.team" not in dropped
    kept = _span_attributes(app, out.TagPolicy(extra={"plan": "keep"}, extra_default="keep"))
    assert kept["user.team"] == "blue"
    hashed = _span_attributes(app, out.TagPolicy(extra_default="hash", hash_key=KEY))
    assert (hashed["user.plan"], hashed["user.team"]) == (_hmac("pro"), _hmac("blue"))
    assert "user.team" in _span_attributes(app, out.TagPolicy.permissive())
    assert "user.plan" not in _span_attributes(app, out.TagPolicy.strict(hash_key=KEY))


def test_a_resolver_returning_a_mapping_carries_its_extra_keys() -> None:
    """A user mapping's keys besides id/name/email/roles (and their aliases) are extras; keys
    that cannot be one are left out quietly (a mapping is not a list of extras)."""
    testing.reset()
    user = {
        "id": 7,
        "username": "ann",
        "is_authenticated": True,
        "plan": "team",
        "password": "hunter2",
        "firstName": "Ann",  # cannot be an extra: left out, not counted
        "permissions": ["read"],
    }
    policy = out.TagPolicy(extra={"plan": "keep"})
    attributes = _span_attributes(_handler_app(lambda: None), policy, user_resolver=lambda scope: user)
    assert (attributes["user.id"], attributes["user.name"], attributes["user.plan"]) == ("7", "ann", "team")
    assert "hunter2" not in repr(attributes)  # unnamed: dropped
    assert "user.username" not in attributes and "user.is_authenticated" not in attributes
    assert "user.extra" not in out.internal_error_counts()


@pytest.mark.parametrize(
    "values",
    [
        {"Plan": "pro"},  # upper case
        {"plan-type": "pro"},  # '-'
        {"p" * 65: "pro"},  # too long a name
        {"plan": ["a", "b"]},  # no sequences
        {"plan": {"a": 1}},
        {"plan": float("nan")},
        {"plan": 2**70},  # past int64
    ],
)
def test_bad_extras_are_dropped_and_counted_never_raised(values: dict[str, Any]) -> None:
    """An extra with a bad name or value type is dropped and counted; the request and the rest go on."""
    testing.reset()
    policy = out.TagPolicy(extra_default="keep")
    attributes = _span_attributes(_handler_app(lambda: out.set_user(id="u-1", ok="yes", **values)), policy)
    assert attributes["user.id"] == "u-1" and attributes["user.ok"] == "yes"
    assert not any(key[len("user.") :] in values for key in attributes)
    assert out.internal_error_counts().get("user.extra") == 1


def test_extras_are_bounded_in_count_and_size() -> None:
    """At most 32 extras and 256 characters a value leave; what is cut is counted in cut_counts()."""
    testing.reset()
    many = {f"f{index:02d}": "v" for index in range(40)}
    policy = out.TagPolicy(extra_default="keep")
    attributes = _span_attributes(_set_user(long="x" * 1000, **many), policy)
    extras = [key for key in attributes if key.startswith("user.") and key != "user.id"]
    assert len(extras) == 32
    assert len(attributes.get("user.long", "x" * 256)) == 256
    counts = out.cut_counts()
    assert counts.get("user.extra.count") == 1 and counts.get("user.extra.value") == 1


def test_a_hashed_extra_in_an_exception_message_leaves_in_its_policy_form() -> None:
    """The raw value of a hashed extra quoted by an exception is replaced there too."""

    def fail() -> None:
        out.set_user(id="u-1", org_id="org-secret-991")
        raise ValueError("no quota for org-secret-991")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = out.UserTrackingMiddleware(
        _handler_app(fail),
        tracer_provider=provider,
        tag_policy=out.TagPolicy(extra={"org_id": "hash"}, hash_key=KEY),
    )
    with pytest.raises(ValueError):
        serve(app, http_scope())
    (span,) = exporter.get_finished_spans()
    (event,) = [event for event in span.events if event.name == "exception"]
    assert event.attributes is not None
    assert "org-secret-991" not in str(event.attributes["exception.message"])
    assert _hmac("org-secret-991") in str(event.attributes["exception.message"])
    assert "org-secret-991" not in str(span.status.description)


def test_the_policy_refuses_bad_extra_configuration_naming_the_fix() -> None:
    """Bad names, modes, reserved names, too many fields, a hash without a key: ValueError at start-up."""
    for bad, message in [
        ({"extra": {"Plan": "keep"}}, "a-z, 0-9"),
        ({"extra": {"email": "keep"}}, "built-in user field"),
        ({"extra": {"plan": "shout"}}, "use one of keep, hash, mask, drop"),
        ({"extra": {f"f{index}": "keep" for index in range(33)}}, "at most 32"),
        ({"extra": {"org_id": "hash"}}, "hash_key"),
        ({"extra": "plan"}, "is not a mapping"),
        ({"extra_default": "all"}, "extra_default"),
    ]:
        with pytest.raises(ValueError, match=message):
            out.TagPolicy(**bad)  # type: ignore[arg-type]
    policy = out.TagPolicy(extra=[("plan", "keep")])
    assert policy.extra == (("plan", "keep"),) and policy == out.TagPolicy(extra={"plan": "keep"})
    assert hash(policy) == hash(out.TagPolicy(extra={"plan": "keep"}))


def test_the_environment_names_extras_and_their_default_mode() -> None:
    """OTEL_PYTHON_USER_TRACKING_EXTRA=name=mode,... and ..._EXTRA_DEFAULT; a mistake names the variable."""
    env = {
        "OTEL_PYTHON_USER_TRACKING_EXTRA": "plan=keep, org_id=HASH",
        "OTEL_PYTHON_USER_TRACKING_EXTRA_DEFAULT": "mask",
        "OTEL_PYTHON_USER_TRACKING_HASH_KEY": KEY,
    }
    policy = policy_from_env(env)
    assert policy.extra == (("org_id", "hash"), ("plan", "keep")) and policy.extra_default == "mask"
    for raw in ("plan", "Plan=keep", "plan=shout"):
        with pytest.raises(ValueError, match="OTEL_PYTHON_USER_TRACKING_EXTRA="):
            policy_from_env({"OTEL_PYTHON_USER_TRACKING_EXTRA": raw})
    with pytest.raises(ValueError, match="OTEL_PYTHON_USER_TRACKING_EXTRA='plan=hash'"):
        policy_from_env({"OTEL_PYTHON_USER_TRACKING_EXTRA": "plan=hash"})
    with pytest.raises(ValueError, match="OTEL_PYTHON_USER_TRACKING_EXTRA_DEFAULT"):
        policy_from_env({"OTEL_PYTHON_USER_TRACKING_EXTRA_DEFAULT": "all"})


def _events(app: Any, policy: out.TagPolicy, *, headers: Any = ()) -> list[out.AnalyticsEvent]:
    sink = InMemorySink()
    provider = TracerProvider()
    processor = out.AnalyticsSpanProcessor(sinks=[sink], flush_interval=60)
    provider.add_span_processor(processor)
    try:
        middleware = out.UserTrackingMiddleware(app, tracer_provider=provider, tag_policy=policy)
        serve(middleware, http_scope(headers=headers))
        assert processor.force_flush(10_000)
        return list(sink.events)
    finally:
        processor.shutdown()


def test_the_events_carry_the_extras_the_span_does_and_every_sink_sends_them() -> None:
    """The pageview's user_extra is the policy-processed extras as compact JSON; PostHog gets them
    in $set, Segment in traits, webhook/jsonl in to_dict, the OTLP sink as user.<name>."""
    policy = out.TagPolicy(extra={"plan": "keep", "org_id": "hash", "seats": "keep"}, hash_key=KEY)
    app = _set_user(plan="pro", org_id="org-9", seats=3, note="unnamed")
    [pageview] = _events(app, policy)
    expected = {"org_id": _hmac("org-9"), "plan": "pro", "seats": 3}
    assert pageview.user_extra == json.dumps(expected, separators=(",", ":"))
    assert dict(pageview.user_extra_fields) == expected
    assert to_posthog(pageview)["properties"]["$set"] == {**expected}
    assert to_segment(pageview)["context"]["traits"] == {**expected}
    assert pageview.to_dict()["user_extra"] == expected
    otlp = attributes_of(pageview)
    assert (otlp["user.plan"], otlp["user.org_id"], otlp["user.seats"]) == ("pro", _hmac("org-9"), 3)
    assert "user.extra" not in otlp and "note" not in repr(pageview)


def test_events_hold_no_extras_without_a_policy_naming_them_or_under_a_privacy_signal() -> None:
    """Default policy: user_extra stays empty; with Sec-GPC the extras go with the other user fields."""
    app = _set_user(plan="pro")
    [plain] = _events(app, out.TagPolicy())
    assert plain.user_extra is None and plain.to_dict()["user_extra"] == {}
    [private] = _events(app, out.TagPolicy(extra={"plan": "keep"}), headers=[(b"sec-gpc", b"1")])
    assert private.user_extra is None and private.user_id is None


def test_the_store_keeps_the_extras_in_their_column(tmp_path: Path) -> None:
    """The SQLite store writes user_extra as the event has it."""
    database = tmp_path / "events.db"
    sink = out.sinks.SQLiteSink(str(database))
    event = out.AnalyticsEvent(
        type="pageview", trace_id="0" * 32, span_id="0" * 16, user_extra={"plan": "pro"}
    )
    sink.send([event])
    sink.close()
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT user_extra FROM events").fetchall() == [('{"plan":"pro"}',)]

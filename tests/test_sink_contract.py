"""The sink contract is explicit: what a sink may declare, its defaults, and what is refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from otel_user_tracking import AnalyticsSpanProcessor, sinks
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.analytics.sink import SinkTraits, sink_traits


class BareSink:
    """Only the required members: name, max_batch_size, send, close."""

    name = "bare"
    max_batch_size = 10

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_sink_that_does_not_say_whether_it_is_remote_is_refused_under_durable_delivery(
    tmp_path: Path,
) -> None:
    """Durable delivery with a sink that has no ``remote``: the start fails naming the sink and the fix."""
    with pytest.raises(ValueError, match=r"sink bare does not say.*remote = True"):
        AnalyticsSpanProcessor(sinks=[BareSink()], durable=tmp_path / "outbox.db")


def test_without_durable_delivery_a_sink_that_does_not_say_is_local() -> None:
    """No durable delivery: the bare sink gets every default (local, no outbox)."""
    assert sink_traits(BareSink()) == SinkTraits()
    processor = AnalyticsSpanProcessor(sinks=[BareSink()])
    try:
        assert processor.outbox is None
    finally:
        processor.shutdown()


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("remote", "yes"),
        ("takes_rows", 1),
        ("preferred_batch_size", -1),
        ("max_wait", 0),
        ("ledger", object()),
    ],
)
def test_a_declared_member_of_the_wrong_kind_is_refused(member: str, value: Any) -> None:
    """A member the contract reads, declared with a value it cannot use, fails naming it."""
    sink = BareSink()
    setattr(sink, member, value)
    with pytest.raises(ValueError, match=rf"BareSink \(sink 'bare'\): {member}="):
        sink_traits(sink)


@pytest.mark.parametrize(
    ("name", "remote"),
    [
        ("ConsoleSink", False),
        ("InMemorySink", False),
        ("JSONLinesSink", False),
        ("SQLiteSink", False),
        ("OTLPLogsSink", True),
        ("PostHogSink", True),
        ("SegmentSink", True),
        ("SwetrixSink", True),
        ("WebhookSink", True),
    ],
)
def test_every_sink_of_the_package_says_whether_it_is_remote(name: str, remote: bool) -> None:
    """Each built-in sink declares ``remote``, so durable delivery takes each of them."""
    assert getattr(sinks, name).remote is remote

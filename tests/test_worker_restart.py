"""The span converter, like the senders, is restarted when its loop raises, and says so once."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

from otel_user_tracking.analytics.events import EventRow
from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.analytics.span_queue import SpanIntake
from otel_user_tracking.config import get_config


class FlakyPipeline:
    """Takes the converter's events; the first ``offer`` raises (a bug past the conversion)."""

    def __init__(self) -> None:
        self.offers = 0
        self.offered: list[EventRow] = []

    def has_room(self) -> bool:
        return True

    def offer(self, events: Sequence[EventRow]) -> None:
        self.offers += 1
        if self.offers == 1:
            raise RuntimeError("offer failed")
        self.offered.extend(events)

    def count_lost(self, events: int, reason: str, outcome: str = "dropped") -> None:
        raise AssertionError("nothing is lost here")


def test_a_converter_whose_loop_raises_is_restarted_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The converter's loop raises twice (its pipeline's offer fails): it is restarted each time,
    the restarts are counted, one line is logged, and later spans are converted."""
    caplog.set_level(logging.WARNING, logger="otel_user_tracking")
    pipeline = FlakyPipeline()
    intake = SpanIntake([pipeline], DeliverySettings(), lambda span, config: [(span,)])  # type: ignore[list-item]
    item: Any = ("span-1", get_config())
    intake.put(item)
    intake.flush(time.monotonic() + 5)
    pipeline.offers = 0  # the next offer fails too
    intake.put(("span-2", get_config()))  # type: ignore[arg-type]
    intake.flush(time.monotonic() + 5)
    intake.put(("span-3", get_config()))  # type: ignore[arg-type]
    assert intake.flush(time.monotonic() + 5)
    intake.stop(time.monotonic() + 1)
    assert pipeline.offered == [("span-3",)]
    assert intake.restarts == 2
    restarted = [r for r in caplog.records if "restarted" in r.getMessage()]
    assert len(restarted) == 1, [r.getMessage() for r in restarted]

"""The background workers' manners: short slices with real pauses, none while someone waits on them."""

from __future__ import annotations

import threading

import pytest

from otel_user_tracking import _workers
from otel_user_tracking._workers import TimeSlicer, awaited


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the pauses the slicer takes instead of sleeping them."""
    taken: list[float] = []
    monkeypatch.setattr(_workers.time, "sleep", taken.append)
    return taken


def test_a_worker_steps_aside_once_its_slice_is_used(pauses: list[float]) -> None:
    """A tick after a whole slice of work pauses for real; a tick within the slice does not."""
    slicer = TimeSlicer(slice_seconds=0.0)
    slicer.tick()
    assert pauses == [_workers.PAUSE_SECONDS]
    TimeSlicer(slice_seconds=60.0).tick()
    assert pauses == [_workers.PAUSE_SECONDS]


def test_slices_stay_short_while_the_loop_idles_and_grow_while_it_is_saturated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slice after a pause is a tenth of how long the worker then waited for its turn,
    within [MIN_SLICE_SECONDS, MAX_SLICE_SECONDS]: an idle loop hands the GIL back at once
    (short slices: a request arriving waits little), a saturated one after milliseconds
    (longer slices: fewer hand-overs, and the worker keeps up)."""
    clock = [1000.0]
    others_hold_the_gil_for = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds + others_hold_the_gil_for[0]

    monkeypatch.setattr(_workers.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(_workers.time, "sleep", sleep)
    slicer = TimeSlicer()
    seen = [slicer.slice_seconds]
    for waited in (0.0002, 0.005, 0.003, 0.02, 0.0001):
        others_hold_the_gil_for[0] = waited
        clock[0] += slicer.slice_seconds / 2
        slicer.tick()  # within the slice: no pause, no change
        assert slicer.slice_seconds == seen[-1]
        clock[0] += slicer.slice_seconds
        slicer.tick()
        seen.append(slicer.slice_seconds)
    low, high = _workers.MIN_SLICE_SECONDS, _workers.MAX_SLICE_SECONDS
    assert seen == pytest.approx([low, low, high, 0.0003, high, low])
    assert TimeSlicer(slice_seconds=0.001).slice_seconds == 0.001  # a fixed slice stays fixed


def test_no_pause_while_a_caller_waits_for_the_workers(pauses: list[float]) -> None:
    """Inside awaited() (force_flush, shutdown) the slicer never pauses: the waiter is whom it yields to."""
    slicer = TimeSlicer(slice_seconds=0.0)
    with awaited():
        with awaited():  # nested (shutdown flushing): still marked until the outer block ends
            slicer.tick()
        slicer.tick()
    assert pauses == []
    slicer.tick()
    assert pauses == [_workers.PAUSE_SECONDS]


def test_the_mark_of_one_waiting_thread_outlives_another_leaving(pauses: list[float]) -> None:
    """Two threads waiting at once: the workers keep going until both are done waiting."""
    inside, release = threading.Event(), threading.Event()

    def wait_in_other_thread() -> None:
        with awaited():
            inside.set()
            release.wait(5)

    other = threading.Thread(target=wait_in_other_thread)
    other.start()
    assert inside.wait(5)
    with awaited():
        pass
    TimeSlicer(slice_seconds=0.0).tick()
    assert pauses == []
    release.set()
    other.join(5)
    TimeSlicer(slice_seconds=0.0).tick()
    assert pauses == [_workers.PAUSE_SECONDS]


def test_force_flush_and_shutdown_mark_their_caller_as_waiting() -> None:
    """A sink sending during force_flush or shutdown sees the caller marked, so its thread runs unpaused."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_user_tracking import AnalyticsSpanProcessor

    from ._sinks import end_request_spans

    seen: list[bool] = []

    class Probe:
        name = "probe"
        max_batch_size = 1000

        def send(self, batch: object) -> None:
            seen.append(bool(_workers._waiting))

        def close(self) -> None:
            return None

    provider = TracerProvider()
    processor = AnalyticsSpanProcessor(sinks=[Probe()], flush_at=1000, flush_interval=60)
    provider.add_span_processor(processor)
    end_request_spans(provider, 3)
    assert processor.force_flush(5000)
    end_request_spans(provider, 2)
    processor.shutdown()
    assert seen == [True, True]
    assert not _workers._waiting

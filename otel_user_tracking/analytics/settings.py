"""How analytics are delivered: batching, queue bounds, retries and the shutdown budget.

One frozen object, validated once, whether it comes from code (``AnalyticsSpanProcessor``'s
arguments) or from the environment (``env.delivery_from_env``): a number that is not finite
or not in its range would make a worker spin, die or never flush, so it is refused at
start-up with the range in the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# option -> (minimum, maximum, what it is); bounds are inclusive.
_RANGES: dict[str, tuple[float, float, str]] = {
    "flush_at": (1, 100_000, "events"),
    "flush_interval": (0.001, 3600, "seconds"),
    "max_queue_size": (1, 10_000_000, "events"),
    "max_retries": (0, 100, "retries"),
    "max_backoff": (0.001, 3600, "seconds"),
    "initial_backoff": (0.001, 3600, "seconds"),
    "shutdown_timeout": (0, 3600, "seconds"),
}


@dataclass(frozen=True)
class DeliverySettings:
    """Batching and retry settings shared by the sinks of one processor.

    Usage: ``AnalyticsSpanProcessor(sinks=..., flush_at=200)``, or the variables
    ``OTEL_PYTHON_USER_TRACKING_FLUSH_AT`` and friends under ``opentelemetry-instrument``.

    Args:
        flush_at: Send when this many events are queued (capped by the sink's batch size).
        flush_interval: Send at least this often (seconds) while events are queued.
        max_queue_size: Events held per sink; beyond it new ones are dropped and counted.
        max_retries: Retries of one batch after its first attempt.
        max_backoff: Cap (seconds) of the exponential backoff and of ``Retry-After``.
        initial_backoff: First backoff (seconds); doubles per retry, with full jitter.
        shutdown_timeout: The whole budget (seconds) of a shutdown: delivering what is queued,
            closing the sinks; what is still undelivered then is counted, not waited for.
    """

    flush_at: int = 100
    flush_interval: float = 5.0
    max_queue_size: int = 10_000
    max_retries: int = 5
    max_backoff: float = 30.0
    initial_backoff: float = 0.5
    shutdown_timeout: float = 4.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            low, high, unit = _RANGES[item.name]
            whole = item.type in (int, "int")
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (whole and value != int(value))
            ):
                kind = "a whole number" if whole else "a number"
                raise ValueError(f"{item.name}={value!r} is not {kind} of {unit}")
            if not math.isfinite(value) or not low <= value <= high:
                raise ValueError(f"{item.name}={value!r} is out of range; use {low:g} to {high:g} {unit}")
            if whole:
                object.__setattr__(self, item.name, int(value))


def describe_range(option: str) -> str:
    """``"1 to 100000 events"``: the allowed values of an option, for error messages."""
    low, high, unit = _RANGES[option]
    return f"{low:g} to {high:g} {unit}"

"""A sampler wrapper that keeps analytics exact while traces are sampled.

Trace sampling and product analytics want different things: traces are sampled to save
export cost, but a pageview count that depends on the sampling rate is wrong. The SDK
records a span (runs processors' ``on_end``) when the decision is ``RECORD_ONLY`` or
``RECORD_AND_SAMPLE`` and exports it only when sampled. Turning the base sampler's ``DROP``
into ``RECORD_ONLY`` for SERVER spans therefore lets the analytics processor see every
request while exporters (which skip unsampled spans) still export only the sampled traces.
Child spans of an unsampled server span stay dropped, so the extra cost is one recorded
span per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class AnalyticsAwareSampler(Sampler):
    """Wrap ``base`` so that SERVER spans it drops are still recorded (not exported).

    Usage: ``TracerProvider(sampler=AnalyticsAwareSampler(TraceIdRatioBased(0.01)))``.
    Under ``opentelemetry-instrument`` the instrumentor wraps the provider's sampler itself
    (``Config.analytics_sampler``, on by default).
    """

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def should_sample(
        self,
        parent_context: Optional[Context],
        trace_id: int,
        name: str,
        kind: Optional[SpanKind] = None,
        attributes: Attributes = None,
        links: Optional[Sequence[Link]] = None,
        trace_state: Optional[TraceState] = None,
    ) -> SamplingResult:
        result = self.base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP and kind is SpanKind.SERVER:
            # A DROP result carries no attributes, but the recorded span starts with the
            # result's: keep the caller's, plus any the base sampler added.
            kept = dict(attributes or {})
            kept.update(result.attributes or {})
            return SamplingResult(Decision.RECORD_ONLY, kept, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"AnalyticsAwareSampler{{{self.base.get_description()}}}"


def install_analytics_sampler(provider: Any) -> bool:
    """Wrap an SDK ``TracerProvider``'s sampler in place; True when it was wrapped now.

    The SDK hands its sampler to each tracer when the tracer is created, so this must run
    before the app creates its tracers, as the instrumentor does under the CLI.
    """
    sampler = getattr(provider, "sampler", None)
    if not isinstance(sampler, Sampler) or isinstance(sampler, AnalyticsAwareSampler):
        return False
    provider.sampler = AnalyticsAwareSampler(sampler)
    return True

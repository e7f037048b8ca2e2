"""Fixtures shared by the whole suite.

Nothing here imports ``otel_user_tracking``, so collection works while the package is
being changed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ._otlp_receiver import OTLPReceiver
from ._postgres import PostgresServer, postgres_server

# Our own bugs re-raise in in-process tests instead of being logged and swallowed.
os.environ["OTEL_PYTHON_USER_TRACKING_RAISE_INTERNAL_ERRORS"] = "1"


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """An empty in-memory exporter, fed by ``tracer_provider``."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A fresh SDK TracerProvider exporting synchronously to ``span_exporter``; shut down after."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """``closing(sink)`` returns the sink (anything with ``close()``) and closes it after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda thing: stack.enter_context(contextlib.closing(thing))


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A running OTLP/HTTP receiver on 127.0.0.1; see tests/_otlp_receiver.py."""
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _reset_package_state() -> Iterator[None]:
    """Forget ``configure()`` values, error counts and salts after each test (public API)."""
    yield
    testing = sys.modules.get("otel_user_tracking.testing")
    if testing is None and "otel_user_tracking" in sys.modules:
        import otel_user_tracking.testing as testing
    if testing is not None:
        testing.reset()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Contrib's suites' counts per suite (pass / by design / real), when they ran."""
    module = sys.modules.get(f"{__package__}.test_contrib_suites") if __package__ else None
    lines = getattr(module, "SUMMARY", None)
    if lines:
        terminalreporter.section("contrib's own test suites against ours")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (tests/_postgres.py); skipped where none is installed."""
    with postgres_server() as server:
        yield server

"""The public API is what the README and the docs say: every name they use exists and is exported."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = "\n".join(
    path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
)
PUBLIC_MODULES = ["otel_user_tracking", "otel_user_tracking.sinks", "otel_user_tracking.testing"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_every_name_in_it_exists(name: str) -> None:
    """Each public module's ``__all__`` is sorted and every name in it can be imported."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for attribute in exported:
        assert getattr(module, attribute) is not None, attribute


def test_every_sink_the_readme_names_is_a_class_of_the_sinks_module() -> None:
    """Each ``...Sink`` class the README mentions is exported by ``otel_user_tracking.sinks``."""
    sinks = importlib.import_module("otel_user_tracking.sinks")
    named = set(re.findall(r"`(\w+Sink)`", README)) | set(re.findall(r"out\.sinks\.(\w+)", README))
    assert {"PostHogSink", "SegmentSink", "SwetrixSink", "WebhookSink", "OTLPLogsSink", "SQLiteSink"} <= named
    for class_name in named:
        assert class_name in sinks.__all__, class_name
        assert isinstance(getattr(sinks, class_name), type), class_name


def test_every_name_the_readme_calls_on_the_package_is_exported() -> None:
    """``out.<name>`` in the README's code is in ``otel_user_tracking.__all__``."""
    package = importlib.import_module("otel_user_tracking")
    used = set(re.findall(r"\bout\.([A-Za-z_]\w*)", README))
    assert used and used <= set(package.__all__), sorted(used - set(package.__all__))

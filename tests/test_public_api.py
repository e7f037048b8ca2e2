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
API_REFERENCE = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
PUBLIC_MODULES = [
    "otel_user_tracking",
    "otel_user_tracking.sinks",
    "otel_user_tracking.store.dashboard",
    "otel_user_tracking.testing",
]
# Exported but not an object with a docstring of its own: the version string, a subpackage.
UNDOCUMENTED = {"otel_user_tracking.__version__", "otel_user_tracking.sinks"}


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


def _exported() -> set[str]:
    names = set()
    for name in PUBLIC_MODULES:
        names |= {f"{name}.{attribute}" for attribute in importlib.import_module(name).__all__}
    return names - UNDOCUMENTED


def test_every_exported_name_is_in_the_api_reference() -> None:
    """Each name in a public module's ``__all__`` has its ``::: module.name`` in docs/reference/api.md."""
    documented = set(re.findall(r"^::: ([\w.]+)$", API_REFERENCE, re.M))
    assert sorted(_exported() - documented) == []


def test_the_api_reference_documents_only_exported_names() -> None:
    """Each ``::: module.name`` of the API reference is in that module's ``__all__``."""
    documented = set(re.findall(r"^::: ([\w.]+)$", API_REFERENCE, re.M))
    assert documented and sorted(documented - _exported()) == []


@pytest.mark.parametrize("name", sorted(_exported()))
def test_every_exported_name_has_a_docstring(name: str) -> None:
    """What the API reference shows of each exported name is its own docstring, not nothing."""
    module, _, attribute = name.rpartition(".")
    value = getattr(importlib.import_module(module), attribute)
    if callable(value):
        assert (value.__doc__ or "").strip(), name


def test_every_module_path_the_docs_name_exists() -> None:
    """Each ``otel_user_tracking.x.y`` the README or the docs name is a module or an attribute of one."""
    dotted = set(re.findall(r"`(otel_user_tracking(?:\.\w+)+)`", README))
    assert dotted
    missing = []
    for path in sorted(dotted):
        try:
            importlib.import_module(path)
        except ImportError:
            module, _, attribute = path.rpartition(".")
            try:
                if not hasattr(importlib.import_module(module), attribute):
                    missing.append(path)
            except ImportError:
                missing.append(path)
    assert missing == []


def test_every_file_the_docs_name_exists() -> None:
    """Each file the README or the docs name in backticks (``examples/x.py``, ``_http.py``) is in
    the repository: a path from the root or from the package, a bare name anywhere in the package."""
    named = set(re.findall(r"`([\w./-]+\.(?:py|toml|yaml|yml|sh|md|txt))`", README))
    package = ROOT / "otel_user_tracking"
    bare = {path.name for path in [*package.rglob("*"), *ROOT.glob("*/*")]}
    missing = [
        name
        for name in sorted(named)
        if not ((ROOT / name).exists() or (package / name).exists() or ("/" not in name and name in bare))
    ]
    assert missing == []

"""Contrib's own test suites (ASGI, WSGI, Flask, Django, Starlette, FastAPI), from the sdists of
the installed releases, against our front doors and framework adapters.

Every contrib test that passes against contrib's own instrumentation passes against ours (built
with ``TagPolicy(ip="keep")`` and no query scrubbing, so policy differences stand aside) or is
listed in tests/contrib/by_design.toml with its reason; see tests/contrib/suites.py for how a
suite runs and tests/contrib/ours_*.py for how each substitutes ours for contrib's.
"""

from __future__ import annotations

import functools
import os
from typing import Union

import pytest

from .contrib import report, suites

SUMMARY: list[str] = []  # one line per suite, printed at the end of the run (conftest.py)


@pytest.fixture(scope="module", params=list(suites.SUITES))
def comparison(request: pytest.FixtureRequest) -> report.Comparison:
    """One suite's outcomes against contrib's instrumentation and against ours."""
    found = _comparison(request.param)
    if isinstance(found, str):
        pytest.skip(found)
    return found


@functools.cache
def _comparison(name: str) -> Union[report.Comparison, str]:
    """The suite's comparison, or why it cannot run here (computed once per session)."""
    suite = suites.SUITES[name]
    try:
        version, base = suites.prepare(suite)
    except suites.SuiteUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"contrib's suite is required in CI: {exc}")
        return str(exc)
    control = suites.run(suite, base, ours=False)
    passed = sum(1 for outcome, _ in control.values() if outcome == "passed")
    if passed * 2 < len(control):  # the installed releases cannot run it (Starlette 0.25 with httpx 0.28)
        lines = sorted({line for outcome, line in control.values() if outcome == "failed"})
        return (
            f"contrib's own instrumentation passes only {passed} of the {suite.name} suite's "
            f"{len(control)} tests with the installed releases ({lines[0] if lines else 'no test ran'})"
        )
    ours = suites.run(suite, base, ours=True)
    found = report.compare(report.load_by_design(), suite, version, control, ours)
    SUMMARY.append(report.summary_line(suite, found))
    return found


def test_contrib_passes_its_own_suite(comparison: report.Comparison, request: pytest.FixtureRequest) -> None:
    """The control: contrib's own instrumentation passes its suite as fetched and run here, but
    for the tests by_design.toml's [[control]] says the installed releases make it fail."""
    assert len(comparison.control) >= suites.SUITES[request.node.callspec.params["comparison"]].minimum
    assert comparison.control_unexplained == {}


def test_every_contrib_test_passes_against_ours_unless_listed(comparison: report.Comparison) -> None:
    """A contrib test that fails against ours is a by-design difference or a known divergence."""
    assert set(comparison.ours) == set(comparison.control)
    assert comparison.unexplained == {}


def test_every_listed_test_still_fails(comparison: report.Comparison) -> None:
    """by_design.toml names no test of this release that passes: a fixed divergence leaves the list."""
    assert comparison.stale == []


def test_readme_shows_the_counts_and_the_by_design_list() -> None:
    """The compatibility page (docs/compatibility.md) is what by_design.toml and this run make of it."""
    by_design = report.load_by_design()
    found = {name: _comparison(name) for name in suites.SUITES}
    unavailable = [reason for reason in found.values() if isinstance(reason, str)]
    if unavailable:
        pytest.skip(unavailable[0])
    comparisons = {name: result for name, result in found.items() if not isinstance(result, str)}
    text = report.README.read_text(encoding="utf-8")
    versions = [
        f"`{suites.SUITES[name].distribution}` {found.version} " for name, found in comparisons.items()
    ]
    if not all(version in text for version in versions):
        pytest.skip("the compatibility page describes other releases than the installed ones")
    assert report.readme_section(by_design, comparisons) in text

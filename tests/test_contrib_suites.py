"""Contrib's own ASGI test suite, from the sdist of the installed release, against our middleware.

Every contrib test passes against ``UserTrackingMiddleware`` (built with ``TagPolicy(ip="keep")``
and no query scrubbing, so policy differences stand aside) or is listed in
tests/contrib/by_design.toml with its reason; see tests/contrib/suites.py for how it runs.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .contrib import suites

SUITE = suites.SUITES["asgi"]


@pytest.fixture(scope="module")
def asgi_runs() -> dict[str, Any]:
    """The suite's version and its outcomes against contrib's middleware and against ours."""
    try:
        version, base = suites.prepare(SUITE)
    except suites.SuiteUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"contrib's suite is required in CI: {exc}")
        pytest.skip(str(exc))
    return {
        "version": version,
        "contrib": suites.run(SUITE, base, ours=False),
        "ours": suites.run(SUITE, base, ours=True),
    }


@pytest.fixture(scope="module")
def by_design() -> dict[str, Any]:
    return suites.load_by_design()


def _failing(outcomes: dict[str, list[str]]) -> dict[str, str]:
    return {test: line for test, (outcome, line) in outcomes.items() if outcome != "passed"}


def test_contrib_middleware_passes_its_own_suite(asgi_runs: dict[str, Any]) -> None:
    """The control: the suite, as fetched and run here, passes against contrib's own middleware."""
    assert len(asgi_runs["contrib"]) >= 80
    assert _failing(asgi_runs["contrib"]) == {}


def test_every_contrib_test_passes_against_ours_unless_listed(
    asgi_runs: dict[str, Any], by_design: dict[str, Any]
) -> None:
    """A contrib test that fails against our middleware is a by-design difference or a known divergence."""
    allowed = suites.listed(by_design, "by_design", SUITE.name) | suites.listed(
        by_design, "divergence", SUITE.name
    )
    assert set(asgi_runs["ours"]) == set(asgi_runs["contrib"])
    unexplained = {test: line for test, line in _failing(asgi_runs["ours"]).items() if test not in allowed}
    assert unexplained == {}


def test_every_listed_test_exists_and_still_fails(
    asgi_runs: dict[str, Any], by_design: dict[str, Any]
) -> None:
    """by_design.toml names no test that passes or no longer exists: a fixed divergence leaves the list."""
    listed = suites.listed(by_design, "by_design", SUITE.name) | suites.listed(
        by_design, "divergence", SUITE.name
    )
    failing = _failing(asgi_runs["ours"])
    assert sorted(test for test in listed if test not in failing) == []


def test_readme_shows_the_by_design_list_and_the_counts(
    asgi_runs: dict[str, Any], by_design: dict[str, Any]
) -> None:
    """The compatibility page is what by_design.toml and this run make of it."""
    section = suites.readme_section(by_design, SUITE, asgi_runs["version"], asgi_runs["ours"])
    if f"{SUITE.distribution}` {asgi_runs['version']}:" not in suites.README.read_text(encoding="utf-8"):
        pytest.skip(f"the compatibility page describes another release than {asgi_runs['version']}")
    assert section in suites.README.read_text(encoding="utf-8")

"""What `opentelemetry-instrument` reads before it loads us: the entry point and the extras."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
from opentelemetry.instrumentation.dependencies import (
    get_dependency_conflicts,
    get_dist_dependency_conflicts,
)
from packaging.requirements import Requirement

GROUP = "opentelemetry_instrumentor"
TARGET = "otel_user_tracking.instrumentor:UserTrackingInstrumentor"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@pytest.fixture
def dist() -> Distribution:
    return distribution("otel-user-tracking")


def _specs(requirements: Iterable[str]) -> set[tuple[str, str]]:
    """Requirements as comparable (name, specifier) pairs, markers and spacing ignored."""
    parsed = [Requirement(text) for text in requirements]
    return {(requirement.name.lower(), str(requirement.specifier)) for requirement in parsed}


def _extra(dist: Distribution, extra: str) -> list[str]:
    """The requirements the installed metadata lists under ``extra``."""
    found = []
    for text in dist.requires or ():
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
            found.append(text)
    return found


def test_entry_point_resolves_to_the_instrumentor(dist: Distribution) -> None:
    """`user_tracking` in the opentelemetry_instrumentor group loads UserTrackingInstrumentor."""
    from otel_user_tracking.instrumentor import UserTrackingInstrumentor

    [entry_point] = [ep for ep in dist.entry_points if ep.group == GROUP]
    assert (entry_point.name, entry_point.value) == ("user_tracking", TARGET)
    assert entry_point.load() is UserTrackingInstrumentor


def test_cli_dependency_check_passes_with_starlette_or_fastapi_installed(dist: Distribution) -> None:
    """get_dist_dependency_conflicts, which the CLI runs before loading us, finds no conflict."""
    assert _extra(dist, "instruments-any"), "no instruments-any extra: the CLI would check nothing"
    assert get_dist_dependency_conflicts(dist) is None


def test_instrumentation_dependencies_match_the_instruments_extras(dist: Distribution) -> None:
    """instrumentation_dependencies() lists what the instruments/instruments-any extras declare."""
    from otel_user_tracking.instrumentor import UserTrackingInstrumentor

    instrumentor = UserTrackingInstrumentor()
    declared = _specs(_extra(dist, "instruments-any")) | _specs(_extra(dist, "instruments"))
    assert _specs(instrumentor.instrumentation_dependencies()) == declared
    assert get_dependency_conflicts((), list(instrumentor.instrumentation_dependencies())) is None


def test_installed_metadata_matches_pyproject(dist: Distribution) -> None:
    """The installed (editable) metadata is not stale: same entry point and instruments-any extra."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["entry-points"][GROUP] == {"user_tracking": TARGET}
    assert _specs(project["optional-dependencies"]["instruments-any"]) == _specs(
        _extra(dist, "instruments-any")
    ), "reinstall: pip install -e . --no-deps"

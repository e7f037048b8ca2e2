"""A pytest plugin for contrib's own test suites: records each test's outcome, and with
``--ours NAME`` runs them against our instrumentation instead of contrib's.

``NAME`` is a suite of ``suites.SUITES``; its module ``ours_NAME`` (this folder) substitutes
our front door for contrib's (``substitute()``) and names contrib's instrumentation scope
(``CONTRIB_SCOPE``), which the finished spans and metrics are read under. Loaded by
tests/test_contrib_suites.py in a pytest subprocess (``-p otel_contrib_adapter``, this folder on
``PYTHONPATH``), never collected by our own suite.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Optional

import pytest
from normalize import normalize_views


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ours", default="", help="substitute our instrumentation for suite NAME's")
    parser.addoption("--outcomes", help="write {test id: [outcome, first line]} to this JSON file")


def pytest_configure(config: pytest.Config) -> None:
    config._contrib_outcomes = {}  # type: ignore[attr-defined]
    name = config.getoption("--ours")
    if name:
        ours = importlib.import_module(f"ours_{name}")
        ours.substitute()
        normalize_views(ours.CONTRIB_SCOPE, getattr(ours, "RENAMED_SCOPES", ("otel_user_tracking",)))


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcomes = _outcomes(report)
    if outcomes is None:
        return
    if report.failed or (report.when == "call" and report.skipped):
        line = str(report.longrepr).strip().splitlines()[-1:] if report.longrepr else [""]
        outcomes[report.nodeid] = ["failed" if report.failed else "skipped", line[0][:300]]
    elif report.when == "call":
        outcomes.setdefault(report.nodeid, ["passed", ""])


def _outcomes(report: pytest.TestReport) -> Optional[dict[str, list[str]]]:
    config = getattr(report, "_contrib_config", None) or _CONFIG.get("config")
    return None if config is None else config._contrib_outcomes  # type: ignore[no-any-return]


_CONFIG: dict[str, Any] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--outcomes")
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(session.config._contrib_outcomes, file, indent=1, sort_keys=True)  # type: ignore[attr-defined]

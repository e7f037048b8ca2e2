"""Who sent a request: the user-agent corpus (tests/data/user_agents.tsv) classified as documented."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Optional

import pytest
from opentelemetry.util.http import detect_synthetic_user_agent

from otel_user_tracking import agents
from otel_user_tracking.analytics import devices
from otel_user_tracking.request.bots import is_bot


class Case(NamedTuple):
    client: str
    device_type: Optional[str]
    browser: Optional[str]
    os: Optional[str]
    agent: str


def _corpus() -> list[Case]:
    cases = []
    for line in (Path(__file__).parent / "data" / "user_agents.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            fields = [None if value == "-" else value for value in line.split("\t")]
            cases.append(Case(*fields))  # type: ignore[arg-type]
    return cases


CORPUS = _corpus()
IDS = [case.agent[:60] for case in CORPUS]


def _fresh() -> None:
    agents._built = None
    agents._client_class.cache_clear()
    devices._loaded = False
    devices._describe.cache_clear()


@pytest.fixture
def without_the_extra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the ``[devices]`` extra were not installed: no list, no ua-parser, no ua-parser-rs."""
    for module in ("crawleruseragents", "ua_parser", "ua_parser_rs"):
        monkeypatch.setitem(sys.modules, module, None)
    _fresh()
    yield
    monkeypatch.undo()
    _fresh()


@pytest.fixture
def without_rust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The list installed without ua-parser-rs: its patterns run in Python's ``re``."""
    monkeypatch.setitem(sys.modules, "ua_parser_rs", None)
    _fresh()
    yield
    monkeypatch.undo()
    _fresh()


def test_the_corpus_covers_every_class_and_device_type() -> None:
    """The corpus holds agents of each documented client class and device type."""
    assert {case.client for case in CORPUS} == set(agents.CLIENT_CLASSES)
    assert {case.device_type for case in CORPUS} == set(devices.DEVICE_TYPES)


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_each_agent_has_its_documented_class_browser_os_and_device(case: Case) -> None:
    """With the ``[devices]`` extra: the class, browser, OS and device type in the corpus."""
    assert agents.rules_source().startswith("crawler-user-agents ")
    found = devices.describe(case.agent)
    assert (found.client, found.browser, found.os, found.device_type) == (
        case.client,
        case.browser,
        case.os,
        case.device_type,
    )
    assert is_bot(case.agent) is (case.client in agents.NOT_PEOPLE)


def test_without_the_extra_the_built_in_rule_gives_every_class_and_devices_are_unknown(
    without_the_extra: None,
) -> None:
    """No list, no parser: the small built-in rule still classes the whole corpus as documented;
    browser and OS are unknown, the device type is known for bots and monitors only."""
    assert agents.rules_source() == "built-in"
    wrong = [(case.agent, agents.client_class(case.agent)) for case in CORPUS]
    assert [pair for pair, case in zip(wrong, CORPUS) if pair[1] != case.client] == []
    for case in CORPUS:
        found = devices.describe(case.agent)
        assert (found.browser, found.os) == (None, None)
        assert found.device_type == ("bot" if case.client in ("bot", "monitor") else None)


def test_without_ua_parser_rs_the_list_in_python_regexes_classes_the_same(without_rust: None) -> None:
    """The list's patterns in Python's ``re`` (no Rust regex set) give the corpus's classes."""
    assert agents._rust_matcher({"bot": ["x"]}) is None
    assert [agents.client_class(case.agent) for case in CORPUS] == [case.client for case in CORPUS]


@pytest.mark.parametrize(
    "agent",
    [
        case.agent
        for case in CORPUS
        if (case.client == "app" and "okhttp" in case.agent) or "Slack/" in case.agent
    ],
)
def test_people_s_apps_the_list_matches_are_still_people(agent: str) -> None:
    """The list calls okhttp an HTTP library and matches Slack's app (``Sonic``); the app
    allow-list keeps them people's."""
    import crawleruseragents

    assert crawleruseragents.is_crawler(agent)
    assert agents.client_class(agent) == "app" and not is_bot(agent)


@pytest.mark.parametrize(
    "agent, person",
    [
        (next(case.agent for case in CORPUS if marker in case.agent), person)
        for marker, person in [
            ("Telegram-Android", True),
            ("Slack/", True),
            ("discord/", True),
            ("CUBOT P50", True),
            ("okhttp/", True),
            ("Google-InspectionTool", False),
            ("DatadogSynthetics", False),
        ]
    ],
    ids=["telegram", "slack", "discord", "cubot", "okhttp", "inspection-tool", "datadog"],
)
def test_the_issue_s_misclassified_agents(agent: str, person: bool) -> None:
    """The agents issue 20 names: the old regex got each of them wrong."""
    assert is_bot(agent) is not person


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_user_agent_synthetic_type_agrees_with_contrib_where_contrib_names_one(case: Case) -> None:
    """contrib's ``detect_synthetic_user_agent`` and ours give the same type wherever contrib gives one."""
    theirs = detect_synthetic_user_agent(case.agent)
    ours = agents.synthetic_type(agents.client_class(case.agent))
    assert ours == {"bot": "bot", "monitor": "test"}.get(case.client)
    if theirs is not None:
        assert ours == theirs


def test_no_agent_is_no_client_and_a_person() -> None:
    """A request without a user agent has no class and is counted as today (a pageview)."""
    assert agents.client_class(None) is agents.client_class("") is None
    assert not is_bot(None) and devices.describe(None) == devices.UNKNOWN


def test_an_unknown_agent_is_a_person_s_browser_or_app() -> None:
    """What no rule knows is never dropped: Mozilla-compatible is a browser, the rest an app."""
    assert agents.client_class("Mozilla/5.0 (X11; Plan9) Nothing/1.0") == "browser"
    assert agents.client_class("AcmeShop/7.1 (iPhone; iOS 18.1; Scale/3.00)") == "app"


def test_classes_are_remembered_per_agent_within_a_bound() -> None:
    """The answer is computed once per distinct agent string, in bounded caches."""
    agents._client_class.cache_clear()
    for _ in range(3):
        agents.client_class(CORPUS[0].agent)
    info = agents._client_class.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (1, 2, agents.MAX_REMEMBERED)
    assert devices._describe.cache_info().maxsize == devices.MAX_REMEMBERED

"""Cookieless visitor ids: stable within a UTC day, unlinkable across days, never the address."""

from __future__ import annotations

from otel_user_tracking.request.visitor import VisitorIdentifier

from ._apps import fastapi_app, get, instrumented, new_tracing

DAY = 86_400.0
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_same_visitor_same_day_has_one_id_and_a_new_one_the_next_day() -> None:
    """One address and agent keep one id all UTC day, across instances, and get another after midnight."""
    clock = Clock(20_000 * DAY + 60)  # one minute after a UTC midnight
    visitors = VisitorIdentifier(site="shop", clock=clock)
    morning = visitors.visitor_id("198.51.100.7", UA)
    clock.now += DAY - 120  # one minute before the next midnight
    assert visitors.visitor_id("198.51.100.7", UA) == morning
    assert VisitorIdentifier(site="shop", clock=clock).visitor_id("198.51.100.7", UA) == morning
    clock.now += 120  # past midnight: a new salt
    assert visitors.visitor_id("198.51.100.7", UA) != morning


def test_address_agent_and_site_each_change_the_id() -> None:
    """Another site, address or user agent each give another 16-character id, which hides the address."""
    clock = Clock(20_000 * DAY)
    base = VisitorIdentifier(site="shop", clock=clock).visitor_id("198.51.100.7", UA)
    assert VisitorIdentifier(site="blog", clock=clock).visitor_id("198.51.100.7", UA) != base
    assert VisitorIdentifier(site="shop", clock=clock).visitor_id("198.51.100.8", UA) != base
    assert VisitorIdentifier(site="shop", clock=clock).visitor_id("198.51.100.7", UA + "x") != base
    assert len(base) == 16 and "198" not in base


def test_requests_from_one_browser_share_a_visitor_id() -> None:
    """Requests from one address and agent share a visitor id, logged in or not; another address differs."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = fastapi_app(tracing)
        get(app, "/public", headers={"user-agent": UA}, peer="198.51.100.7")
        get(
            app,
            "/users/1",
            headers={"user-agent": UA, "authorization": "Bearer tok-bob"},
            peer="198.51.100.7",
        )
        get(app, "/missing", headers={"user-agent": UA}, peer="203.0.113.1")
    ids = [span.attributes.get("user_tracking.visitor_id") for span in tracing.server_spans()]
    assert ids[0] == ids[1] != ids[2] and all(ids)


def test_a_new_day_forgets_the_cached_ids_with_the_old_salt() -> None:
    """After midnight the id cache holds only today's entries, so yesterday's salted ids are unreachable."""
    from otel_user_tracking.request.visitor import _visitor_id

    clock = Clock(30_000 * DAY)
    visitors = VisitorIdentifier(clock=clock)
    visitors.visitor_id("198.51.100.7", UA)
    assert _visitor_id.cache_info().currsize >= 1
    clock.now += DAY
    visitors.visitor_id("198.51.100.7", UA)
    assert _visitor_id.cache_info().currsize == 1  # only today's id: yesterday's salt is unreachable

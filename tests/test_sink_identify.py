"""A visitor who logs in is told to each backend in its own words, once, as its official SDK says it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from posthog import Posthog
from segment.analytics.client import Client as SegmentClient

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks._identified import IdentifiedPairs, identify_id
from otel_user_tracking.sinks.posthog import PostHogSink
from otel_user_tracking.sinks.segment import SegmentSink
from otel_user_tracking.sinks.swetrix import SwetrixSink

from ._http_sink_server import ScriptedHTTPServer
from .test_sink_oracles import WHEN, _event, _one, assert_same_shape

TRAITS = {"name": "Jane Roe", "email": "jane@example.com"}
PROJECT = "A1b2C3d4E5f6"


def _journey(**extra: Any) -> list[AnalyticsEvent]:
    """A visitor's two anonymous pageviews, then three logged in; ``extra`` fields on each."""
    anonymous = {"user_id": None, "visitor_id": "v-1"}
    logged_in = {
        "user_id": "user-42",
        "visitor_id": "v-1",
        "user_name": TRAITS["name"],
        "user_email": TRAITS["email"],
    }
    return [
        _event(
            "pageview",
            event_id=f"00000000-0000-4000-8000-00000000000{n}",
            timestamp=WHEN + timedelta(seconds=n),
            **{**fields, **extra},
        )
        for n, fields in enumerate([anonymous, anonymous, logged_in, logged_in, logged_in])
    ]


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as running:
        yield running


def _batches(server: ScriptedHTTPServer, path: str) -> list[list[dict[str, Any]]]:
    return [request.json["batch"] for request in server.received if request.path == path]


def test_posthog_is_sent_one_identify_with_the_anonymous_id_as_the_sdk_shapes_it(
    server: ScriptedHTTPServer,
) -> None:
    """Before the first logged-in pageview: one $identify ($anon_distinct_id, $set) shaped as the SDK's."""
    events = _journey()
    sink = PostHogSink("phc_key", server.url)
    sink.send(events[:4])
    sink.send(events[4:])
    sink.close()
    [first, second] = _batches(server, "/batch/")
    assert [e["event"] for e in first] == ["$pageview", "$pageview", "$identify", "$pageview", "$pageview"]
    assert [e["event"] for e in second] == ["$pageview"]  # told once per visitor, user and process
    identify = first[2]
    assert identify["distinct_id"] == "user-42" and identify["properties"]["$anon_distinct_id"] == "v-1"
    assert identify["properties"]["$set"] == TRAITS and identify["uuid"] == identify_id(events[2])
    assert [e["distinct_id"] for e in first] == ["v-1", "v-1", "user-42", "user-42", "user-42"]
    server.received.clear()
    client = Posthog("phc_key", host=server.url, sync_mode=True)
    client.capture(
        "$identify",
        distinct_id="user-42",
        properties={"$anon_distinct_id": "v-1", "$set": TRAITS},
        timestamp=events[2].timestamp,
        uuid=identify["uuid"],
    )
    if client.consumers is not None:
        client.shutdown()
    [sdk_event] = _one(server.received, "/batch/")["batch"]
    assert_same_shape(sdk_event, identify)
    assert set(sdk_event) == set(identify)


def test_a_refused_batch_sends_the_identify_again_with_its_retry(server: ScriptedHTTPServer) -> None:
    """A 503 on the batch that carried the $identify: the retry carries it again, with the same uuid."""
    events = _journey()
    server.answers.append((503, {}))
    sink = PostHogSink("phc_key", server.url)
    with pytest.raises(Exception, match="503"):
        sink.send(events)
    sink.send(events)
    sink.close()
    first, retry = _batches(server, "/batch/")
    assert first == retry and sum(e["event"] == "$identify" for e in retry) == 1


def test_posthog_takes_the_frontends_distinct_id_as_the_anonymous_one(server: ScriptedHTTPServer) -> None:
    """With X-POSTHOG-DISTINCT-ID, anonymous events go by it and the $identify merges it, not the visitor."""
    events = _journey(posthog_distinct_id="0192f0e4-aaaa-7bbb-8ccc-123456789abc")
    sink = PostHogSink("phc_key", server.url)
    sink.send(events)
    sink.close()
    [batch] = _batches(server, "/batch/")
    assert batch[0]["distinct_id"] == "0192f0e4-aaaa-7bbb-8ccc-123456789abc"
    [identify] = [e for e in batch if e["event"] == "$identify"]
    assert identify["properties"]["$anon_distinct_id"] == "0192f0e4-aaaa-7bbb-8ccc-123456789abc"


def test_segment_is_sent_identify_and_keeps_the_anonymous_id_as_the_sdk_shapes_them(
    server: ScriptedHTTPServer,
) -> None:
    """One identify (userId, anonymousId, traits) before the first logged-in page; later calls keep both."""
    events = _journey()
    sink = SegmentSink("seg_key", server.url)
    sink.send(events)
    sink.close()
    [batch] = _batches(server, "/v1/batch")
    assert [m["type"] for m in batch] == ["page", "page", "identify", "page", "page", "page"]
    identify, later = batch[2], batch[5]
    assert (identify["userId"], identify["anonymousId"], identify["traits"]) == ("user-42", "v-1", TRAITS)
    assert (later["userId"], later["anonymousId"]) == ("user-42", "v-1")
    server.received.clear()
    client = SegmentClient("seg_key", host=server.url, sync_mode=True)
    client.identify(
        user_id="user-42",
        anonymous_id="v-1",
        traits=TRAITS,
        context={"ip": "198.51.100.0"},
        timestamp=events[2].timestamp,
        message_id=identify["messageId"],
    )
    client.page(user_id="user-42", anonymous_id="v-1", name="/products/{id}", timestamp=WHEN, message_id="m")
    sdk_identify, sdk_page = (request.json["batch"][0] for request in server.received)
    assert_same_shape(sdk_identify, identify)
    assert {key for key, value in sdk_identify.items() if value is not None} <= set(identify)
    assert_same_shape({**sdk_page, "messageId": later["messageId"], "timestamp": later["timestamp"]}, later)


def test_swetrix_is_asked_to_identify_once_where_the_event_has_the_visitors_address(
    server: ScriptedHTTPServer,
) -> None:
    """POST /log/identify (pid, profileId, traits; agent and address) once; never without an address."""
    sink = SwetrixSink(PROJECT, server.url + "/log")
    sink.send(_journey())
    sink.send(_journey(client_address=None, user_id=None))
    sink.send([_event("pageview", user_id="user-7", visitor_id="v-2", client_address=None)])
    sink.close()
    identifies = [request for request in server.received if request.path == "/log/identify"]
    assert len(identifies) == 1
    [identify] = identifies
    assert identify.json == {"pid": PROJECT, "profileId": "user-42", "traits": TRAITS}
    assert identify.headers["x-client-ip-address"] == "198.51.100.0" and identify.headers["user-agent"]
    pageviews = [request.json for request in server.received if request.path == "/log"]
    assert sum(view.get("profileId") == "user-42" for view in pageviews) == 3


def test_the_memory_of_who_was_identified_is_bounded() -> None:
    """Past its limit the oldest pairs are forgotten (told again at worst), the newest kept."""
    pairs = IdentifiedPairs(limit=3)
    for n in range(5):
        pairs.remember((f"v-{n}", "user"))
    assert ("v-0", "user") not in pairs and ("v-1", "user") not in pairs
    assert all((f"v-{n}", "user") in pairs for n in (2, 3, 4))

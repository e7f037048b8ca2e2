"""The WSGI server span's request attributes and name equal the contrib WSGI middleware's.

``request/wsgi_semconv.py`` computes them without the contrib helpers for speed; these tests
hold it to the installed contrib release on generated environs in every semconv mode (the
version matrix runs them on the oldest and the newest supported releases), and check that it
stands down when the contrib functions disagree with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation import wsgi as contrib
from opentelemetry.instrumentation._semconv import _StabilityMode

from otel_user_tracking.request import wsgi_semconv
from otel_user_tracking.request.semconv import HttpSemconv, _outcome
from otel_user_tracking.request.wsgi_semconv import WSGISemconv

MODES = [_StabilityMode.DEFAULT, _StabilityMode.HTTP, _StabilityMode.HTTP_DUP]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(max_size=20)
environs = st.fixed_dictionaries(
    {},
    optional={
        "REQUEST_METHOD": st.one_of(st.sampled_from(["GET", "post", " PUT ", "PURGE", ""]), texts),
        "SERVER_NAME": st.one_of(st.sampled_from(["0.0.0.0", "example.com"]), texts),
        "wsgi.url_scheme": st.sampled_from(["http", "https", ""]),
        "HTTP_HOST": st.one_of(st.sampled_from(["example.com", "a:b@example.com:8443", ""]), texts),
        "SERVER_PORT": st.sampled_from(["80", "8000", "0", ""]),
        "RAW_URI": st.sampled_from(["/users/7", "/s?q=1&token=x", "", "/a b"]),
        "REQUEST_URI": st.sampled_from(["/users/7?a=1", ""]),
        "PATH_INFO": st.one_of(st.sampled_from(["/users/7", "/s", " /x ", ""]), texts),
        "QUERY_STRING": st.sampled_from(["", "q=1&token=x", "a=1"]),
        "REMOTE_ADDR": st.sampled_from(["10.0.0.9", "::1", ""]),
        "REMOTE_PORT": st.sampled_from(["50000", "0", "x", ""]),
        "REMOTE_HOST": st.sampled_from(["client.example", "10.0.0.9", ""]),
        "HTTP_USER_AGENT": st.one_of(
            st.sampled_from(["Mozilla/5.0 Chrome/126", "Googlebot/2.1", "curl/8", " ", ""]), texts
        ),
        "SERVER_PROTOCOL": st.sampled_from(["HTTP/1.1", "http/2", "HTTP/", "SPDY/3", ""]),
    },
)


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(environ=environs)
def test_the_fast_path_gives_the_contrib_answers(mode: Any, environ: dict[str, Any]) -> None:
    """On any environ, the attributes and the span name are the contrib helpers' (or the same error)."""
    ours = WSGISemconv(HttpSemconv(mode))
    if not ours.fast:
        pytest.skip("the installed release differs from the fast path in this mode; it is not used")
    assert _outcome(ours.request_attributes, environ) == _outcome(
        contrib.collect_request_attributes, environ, mode
    )
    assert _outcome(ours.span_name, environ) == _outcome(contrib.get_default_span_name, environ)


def test_the_fast_path_is_used_in_the_default_mode() -> None:
    """With the installed release and the default mode the fast path proves itself and is on."""
    assert WSGISemconv(HttpSemconv(_StabilityMode.DEFAULT)).fast


def test_it_stands_down_when_contrib_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """A contrib release that computes attributes differently makes the contrib functions serve."""
    original = contrib.collect_request_attributes

    def changed(environ: dict[str, Any], mode: Any = _StabilityMode.DEFAULT) -> dict[str, Any]:
        return {**original(environ, mode), "http.new_attribute": "1"}

    monkeypatch.setattr(wsgi_semconv._contrib, "collect_request_attributes", changed)
    ours = WSGISemconv(HttpSemconv(_StabilityMode.DEFAULT))
    assert not ours.fast
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "RAW_URI": "/a", "HTTP_HOST": "h"}
    assert ours.request_attributes(environ)["http.new_attribute"] == "1"

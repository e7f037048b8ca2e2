"""Configuration: code over environment over defaults, and clear errors for bad values."""

from __future__ import annotations

import pytest

import otel_user_tracking as out
from otel_user_tracking.config import get_config, reset_config
from otel_user_tracking.env import config_from_env

from ._apps import bearer, fastapi_app, get, instrumented, new_tracing


@pytest.fixture(autouse=True)
def _fresh_config() -> None:
    reset_config()


def test_environment_sets_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every OTEL_PYTHON_USER_TRACKING_* policy variable reaches the TagPolicy."""
    for name, value in {
        "ID": "hash",
        "NAME": "mask",
        "EMAIL": "drop",
        "IP": "anonymize",
        "HASH_KEY": "test-key-" * 4,
        "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.0/16",
        "CHILD_SPANS": "false",
    }.items():
        monkeypatch.setenv(f"OTEL_PYTHON_USER_TRACKING_{name}", value)
    config = get_config()
    policy = config.tag_policy
    assert (policy.id, policy.name, policy.email, policy.ip) == ("hash", "mask", "drop", "anonymize")
    assert policy.trusted_proxies == ("10.0.0.0/8", "192.168.0.0/16")
    assert config.child_spans is False


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("IP", "sometimes", "keep, anonymize, drop"),
        ("EMAIL", "encrypt", "keep, hash, mask, drop"),
        ("CHILD_SPANS", "maybe", "true or false"),
    ],
)
def test_bad_environment_value_names_the_variable_and_allowed_values(
    name: str, value: str, allowed: str
) -> None:
    """A bad value fails with the variable's name and what it may be."""
    with pytest.raises(ValueError) as info:
        config_from_env({f"OTEL_PYTHON_USER_TRACKING_{name}": value})
    assert f"OTEL_PYTHON_USER_TRACKING_{name}" in str(info.value)
    assert allowed in str(info.value)


def test_hash_mode_from_env_without_key_names_the_key_variable() -> None:
    """Hashing from the environment without a key says which variable to set."""
    with pytest.raises(ValueError, match="OTEL_PYTHON_USER_TRACKING_HASH_KEY"):
        config_from_env({"OTEL_PYTHON_USER_TRACKING_EMAIL": "hash"})


def test_code_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure() wins over the environment, which wins over defaults."""
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_EMAIL", "drop")
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_INTERNAL_SPANS", "true")
    assert get_config().tag_policy.email == "drop"
    out.configure(tag_policy=out.TagPolicy(email="mask"))
    config = get_config()
    assert config.tag_policy.email == "mask"
    assert config.internal_spans is True  # still from the environment
    assert config.min_status_to_capture == 500  # default


def test_excluded_urls_fall_back_to_the_generic_otel_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_USER_TRACKING_EXCLUDED_URLS wins over OTEL_PYTHON_EXCLUDED_URLS."""
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "healthz")
    assert get_config().excluded_urls == ("healthz",)
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_EXCLUDED_URLS", "ping,metrics")
    reset_config()
    assert get_config().excluded_urls == ("ping", "metrics")


def test_unknown_configure_option_lists_known_ones() -> None:
    """A typo in configure() fails with the list of options."""
    with pytest.raises(ValueError, match=r"known options: .*tag_policy"):
        out.configure(tag_polcy=out.TagPolicy())


def test_configure_after_instrumentation_applies_to_the_next_request() -> None:
    """configure() called while the app is running changes the next request's tags."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = fastapi_app(tracing)
        get(app, "/me", headers=bearer("tok-jane"))
        out.configure(tag_policy=out.TagPolicy(email="drop", name="mask"))
        get(app, "/users/1", headers=bearer("tok-jane"))
    first, second = tracing.server_span("/me").attributes, tracing.server_span("/users/1").attributes
    assert first["user.email"] == "Jane@Example.com"
    assert "user.email" not in second
    assert second["user.name"] == "J***"


def test_excluded_urls_are_not_tracked() -> None:
    """A request whose URL matches excluded_urls gets no span from us."""
    tracing = new_tracing()
    with instrumented(tracing, excluded_urls="/public"):
        app = fastapi_app(tracing)
        get(app, "/public")
        get(app, "/me", headers=bearer("tok-jane"))
    assert [
        span.attributes.get("url.path", span.attributes.get("http.target")) for span in tracing.server_spans()
    ] == ["/me"]

"""TagPolicy: every field mode, IP modes, presets and configuration errors."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from otel_user_tracking import TagPolicy
from otel_user_tracking.env import policy_from_env
from otel_user_tracking.policy import anonymize_ip, mask_email, mask_name

KEY = "s3cret-key-for-tests"


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("field", "mode", "value", "expected"),
    [
        ("id", "keep", "user-42", "user-42"),
        ("id", "hash", "user-42", _hmac("user-42")),
        ("id", "mask", "user-42", "u***"),
        ("id", "drop", "user-42", None),
        ("name", "keep", "Jane Roe", "Jane Roe"),
        ("name", "hash", "Jane Roe", _hmac("Jane Roe")),
        ("name", "mask", "Jane Roe", "J***"),
        ("name", "drop", "Jane Roe", None),
        ("email", "keep", " Jane@Example.com ", " Jane@Example.com "),
        ("email", "hash", " Jane@Example.com ", _hmac("jane@example.com")),
        ("email", "mask", " Jane@Example.com ", "J***@Example.com"),
        ("email", "drop", " Jane@Example.com ", None),
    ],
)
def test_field_modes(field: str, mode: str, value: str, expected: object) -> None:
    """Each mode keeps, HMACs, masks or drops a user field; emails are normalised before hashing."""
    policy = TagPolicy(**{field: mode}, hash_key=KEY)  # type: ignore[arg-type]
    assert getattr(policy, f"apply_{field}")(value) == expected


def test_hash_is_lowercase_hex_hmac_sha256_and_key_dependent() -> None:
    """The hash is 64 lowercase hex characters and changes with the key."""
    digest = TagPolicy(id="hash", hash_key=KEY).apply_id("42")
    assert digest == _hmac("42")
    assert digest is not None and len(digest) == 64 and digest == digest.lower()
    assert TagPolicy(id="hash", hash_key="another-key-for-tests").apply_id("42") != digest


@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        ("keep", "198.51.100.77", "198.51.100.77"),
        ("anonymize", "198.51.100.77", "198.51.100.0"),
        ("anonymize", "2001:db8:abcd:12:34::1", "2001:db8:abcd::"),
        ("anonymize", "::ffff:198.51.100.77", "198.51.100.0"),
        ("anonymize", "not-an-ip", None),
        ("drop", "198.51.100.77", None),
    ],
)
def test_ip_modes(mode: str, address: str, expected: object) -> None:
    """IPv4 keeps its /24, IPv6 its /48; drop exports nothing; garbage never leaks."""
    assert TagPolicy(ip=mode).apply_ip(address) == expected  # type: ignore[arg-type]


def test_defaults_keep_user_fields_and_drop_the_ip() -> None:
    """By default id, name and email are kept and the client address is dropped."""
    policy = TagPolicy()
    assert (policy.id, policy.name, policy.email, policy.ip) == ("keep", "keep", "keep", "drop")
    assert policy.apply_ip("198.51.100.7") is None


def test_hash_without_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash mode with no key is a configuration error that says how to fix it."""
    with pytest.raises(ValueError, match="OTEL_PYTHON_USER_TRACKING_HASH_KEY") as info:
        TagPolicy(email="hash")
    assert "email" in str(info.value)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("k", "has 1 byte"),
        (" \t\n ", "is blank"),
        ("fifteen-bytes!!", "has 15 bytes"),
        ("  short-key  \n", "has 9 bytes"),
        ("x" * 32, "one character repeated"),
        (b"0123456789", "has 10 bytes"),
    ],
)
def test_weak_or_blank_hash_key_is_refused_naming_the_variable(key: str, says: str) -> None:
    """A key shorter than 16 bytes (whitespace aside), blank or one repeated character fails at
    construction, hashed fields or not, with the variable and how to make a good key."""
    for params in ({"email": "hash"}, {}):
        with pytest.raises(ValueError) as info:
            TagPolicy(hash_key=key, **params)  # type: ignore[arg-type]
        message = str(info.value)
        assert says in message and "OTEL_PYTHON_USER_TRACKING_HASH_KEY" in message
        assert "at least 16 bytes" in message and "secrets.token_urlsafe" in message


def test_weak_hash_key_from_the_environment_is_refused() -> None:
    """The environment's key is checked alike, and the message names the variable."""
    env = {"OTEL_PYTHON_USER_TRACKING_ID": "hash", "OTEL_PYTHON_USER_TRACKING_HASH_KEY": "   "}
    with pytest.raises(ValueError, match=r"OTEL_PYTHON_USER_TRACKING_HASH_KEY\) is blank"):
        policy_from_env(env)
    assert policy_from_env({**env, "OTEL_PYTHON_USER_TRACKING_HASH_KEY": "a" * 15 + "b"}).id == "hash"


@pytest.mark.parametrize(("field", "value"), [("id", "encrypt"), ("email", "KEEP"), ("ip", "mask")])
def test_unknown_mode_lists_the_allowed_ones(field: str, value: str) -> None:
    """An unknown mode fails at construction and lists the modes that exist."""
    with pytest.raises(ValueError, match="use one of"):
        TagPolicy(**{field: value})  # type: ignore[arg-type]


def test_bad_trusted_proxy_is_a_configuration_error() -> None:
    """A trusted proxy that is not a CIDR fails at construction with the expected form."""
    with pytest.raises(ValueError, match="CIDR"):
        TagPolicy(trusted_proxies=["10.0.0.0/33"])


def test_strict_preset_hashes_the_id_and_drops_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """TagPolicy.strict() exports only the keyed hash of the id, with the key from the env."""
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_HASH_KEY", KEY)
    policy = TagPolicy.strict()
    assert policy.apply_id("42") == _hmac("42")
    assert policy.apply_name("Jane") is None
    assert policy.apply_email("jane@example.com") is None
    assert policy.apply_ip("198.51.100.7") is None
    assert policy.roles is False


def test_strict_preset_without_any_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """TagPolicy.strict() with no key anywhere is a configuration error."""
    monkeypatch.delenv("OTEL_PYTHON_USER_TRACKING_HASH_KEY", raising=False)
    with pytest.raises(ValueError, match="hash_key"):
        TagPolicy.strict()


def test_permissive_preset_keeps_everything() -> None:
    """TagPolicy.permissive() keeps every field and the client address."""
    policy = TagPolicy.permissive()
    assert policy.apply_email("jane@example.com") == "jane@example.com"
    assert policy.apply_ip("198.51.100.7") == "198.51.100.7"


def test_hash_key_never_shows_in_repr() -> None:
    """The key is not part of the policy's repr (it ends up in logs)."""
    assert KEY not in repr(TagPolicy(id="hash", hash_key=KEY))


@pytest.mark.parametrize(
    ("value", "expected"), [("jane@example.com", "j***@example.com"), ("nobody", "n***")]
)
def test_mask_email(value: str, expected: str) -> None:
    """Email masking keeps the first character of the local part and the domain."""
    assert mask_email(value) == expected


def test_mask_name_and_anonymize_helpers() -> None:
    """The pure helpers behave as documented on edge input."""
    assert mask_name("  ") == "***"
    assert anonymize_ip("10.1.2.3") == "10.1.2.0"

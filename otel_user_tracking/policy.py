"""TagPolicy: what each user field and the client address may look like once exported.

Pure functions and a frozen dataclass; no OpenTelemetry imports, so the policy can be
unit-tested and reused by every exporter path (span attributes and analytics events).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence, Union

FieldMode = Literal["keep", "hash", "mask", "drop"]
IPMode = Literal["keep", "anonymize", "drop"]

FIELD_MODES: tuple[str, ...] = ("keep", "hash", "mask", "drop")
IP_MODES: tuple[str, ...] = ("keep", "anonymize", "drop")
HASH_KEY_ENV = "OTEL_PYTHON_USER_TRACKING_HASH_KEY"
# The shortest hash key accepted, in bytes (not counting surrounding whitespace): a short key
# can be found by trying keys, and then every hashed value by trying values.
MIN_HASH_KEY_BYTES = 16
_NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# The user fields a mode applies to. Each is a TagPolicy field, an OTEL_PYTHON_USER_TRACKING_<FIELD>
# variable, a ``user.<field>`` span attribute and a ``user_<field>`` event field (in this order).
USER_FIELDS: tuple[str, ...] = ("id", "name", "email")
# Extra user fields (``set_user(plan="pro")``): ``user.<name>`` attributes, named by the policy.
EXTRA_NAME = re.compile(r"[a-z0-9_.]{1,64}")
RESERVED_EXTRA_NAMES = frozenset({*USER_FIELDS, "roles"})
MAX_EXTRA_FIELDS = 32  # per user: the extras past this count are dropped (counted)
MAX_EXTRA_VALUE_CHARS = 256  # an extra's text past this is cut (counted)
ExtraValue = Union[str, bool, int, float]

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_networks(cidrs: Sequence[str], *, source: str = "trusted_proxies") -> tuple[IPNetwork, ...]:
    """Parse CIDRs (or bare addresses) into networks, naming `source` in the error."""
    networks = []
    for raw in cidrs:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{source}: {text!r} is not an IP network; use CIDR form such as "
                "'10.0.0.0/8' or '2001:db8::/32', or a single address such as '10.0.0.1'"
            ) from None
    return tuple(networks)


def _key_bytes(key: Union[str, bytes, None]) -> Optional[bytes]:
    if key is None:
        return None
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def check_hash_key(
    key: Optional[bytes], option: str = "TagPolicy.hash_key", variable: str = HASH_KEY_ENV
) -> None:
    """Refuse a blank key or one shorter than ``MIN_HASH_KEY_BYTES``, saying how to make one."""
    if key is None:
        return
    text = key.strip()
    if len(text) >= MIN_HASH_KEY_BYTES and len(set(text)) > 1:
        return
    if not text:
        what = "is blank"
    elif len(text) >= MIN_HASH_KEY_BYTES:
        what = "is one character repeated"
    else:
        what = f"has {len(text)} byte{'s' if len(text) > 1 else ''}"
    raise ValueError(
        f"{option} ({variable}) {what}; use a random secret of at least "
        f"{MIN_HASH_KEY_BYTES} bytes, e.g. {variable}=$({_NEW_KEY}), and keep it stable"
    )


@dataclass(frozen=True)
class TagPolicy:
    """Decides, per field, what leaves the process: the value, its keyed hash, a mask, or nothing.

    Usage: ``TagPolicy(email="hash", ip="anonymize", hash_key=KEY, trusted_proxies=["10.0.0.0/8"])``.

    The policy applies to every exported byte: the span attributes this package sets, the
    client-address attributes other instrumentations set on the same span, and the analytics
    events. Hashing is HMAC-SHA256 with ``hash_key`` so that values cannot be recovered by
    hashing a dictionary of guesses without the key.

    Args:
        id: Mode for ``user.id``: "keep", "hash", "mask" or "drop".
        name: Mode for ``user.name``.
        email: Mode for ``user.email`` (hashed emails are stripped and lower-cased first).
        roles: Whether ``user.roles`` is exported at all.
        ip: Mode for the client address: "keep", "anonymize" (IPv4 /24, IPv6 /48) or "drop".
        hash_key: Secret for the "hash" mode; required when any field is hashed, at least 16
            bytes (``MIN_HASH_KEY_BYTES``) besides surrounding whitespace.
        trusted_proxies: CIDRs whose ``X-Forwarded-For``/``Forwarded`` headers are believed.
        extra: Modes of extra user fields by name (``{"plan": "keep", "org_id": "hash"}``),
            exported as ``user.<name>``; names are 1-64 characters of ``[a-z0-9_.]`` and not
            ``id``, ``name``, ``email`` or ``roles``. Stored as sorted ``(name, mode)`` pairs.
        extra_default: Mode of an extra field ``extra`` does not name: "drop" (the default),
            so a field reaches the span only when the policy names it, unless set otherwise.
    """

    id: FieldMode = "keep"
    name: FieldMode = "keep"
    email: FieldMode = "keep"
    roles: bool = True
    ip: IPMode = "drop"
    hash_key: Union[str, bytes, None] = field(default=None, repr=False)
    trusted_proxies: Sequence[str] = ()
    extra: Union[Mapping[str, FieldMode], Iterable[tuple[str, FieldMode]]] = ()
    extra_default: FieldMode = "drop"
    _networks: tuple[IPNetwork, ...] = field(default=(), init=False, repr=False, compare=False)
    _key: Optional[bytes] = field(default=None, init=False, repr=False, compare=False)
    _extra_modes: Mapping[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _exports_extra: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in USER_FIELDS:
            value = getattr(self, attr)
            if value not in FIELD_MODES:
                raise ValueError(
                    f"TagPolicy.{attr}={value!r} is not a mode; use one of {', '.join(FIELD_MODES)}"
                )
        if self.ip not in IP_MODES:
            raise ValueError(f"TagPolicy.ip={self.ip!r} is not a mode; use one of {', '.join(IP_MODES)}")
        extra = _extra_modes(self.extra)
        if self.extra_default not in FIELD_MODES:
            raise ValueError(
                f"TagPolicy.extra_default={self.extra_default!r} is not a mode; "
                f"use one of {', '.join(FIELD_MODES)}"
            )
        object.__setattr__(self, "extra", tuple(sorted(extra.items())))
        object.__setattr__(self, "_extra_modes", extra)
        exports = self.extra_default != "drop" or any(mode != "drop" for mode in extra.values())
        object.__setattr__(self, "_exports_extra", exports)
        key = _key_bytes(self.hash_key)
        check_hash_key(key or None)
        hashed = [attr for attr in USER_FIELDS if getattr(self, attr) == "hash"]
        hashed += [f"extra {name!r}" for name, mode in extra.items() if mode == "hash"]
        if self.extra_default == "hash":
            hashed.append("extra_default")
        if hashed and not key:
            raise ValueError(
                f"TagPolicy hashes {', '.join(hashed)} but has no hash_key; pass hash_key=... "
                f"or set {HASH_KEY_ENV}"
            )
        proxies = (self.trusted_proxies,) if isinstance(self.trusted_proxies, str) else self.trusted_proxies
        object.__setattr__(self, "trusted_proxies", tuple(proxies))
        object.__setattr__(self, "_networks", parse_networks(self.trusted_proxies))
        object.__setattr__(self, "_key", key)

    @classmethod
    def strict(cls, hash_key: Union[str, bytes, None] = None, **overrides: object) -> TagPolicy:
        """Only a keyed hash of the user id leaves the process; no name, email, roles or IP.

        The key may come from ``OTEL_PYTHON_USER_TRACKING_HASH_KEY``.
        """
        key = hash_key if hash_key is not None else (os.environ.get(HASH_KEY_ENV) or None)
        params: dict[str, object] = {
            **dict.fromkeys(USER_FIELDS, "drop"),
            "id": "hash",
            "roles": False,
            "ip": "drop",
            "hash_key": key,
        }
        params.update(overrides)
        return cls(**params)  # type: ignore[arg-type]

    @classmethod
    def permissive(cls, **overrides: object) -> TagPolicy:
        """Everything is kept, the client address and every extra field included. For internal
        tools, not the public."""
        params: dict[str, object] = {**dict.fromkeys(USER_FIELDS, "keep"), "ip": "keep"}
        params["extra_default"] = "keep"
        params.update(overrides)
        return cls(**params)  # type: ignore[arg-type]

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        """The parsed ``trusted_proxies``."""
        return self._networks

    def apply(self, field: str, value: Optional[str]) -> Optional[str]:
        """The user field ``field`` (one of ``USER_FIELDS``) as the policy exports it, or None."""
        if field == "email":
            return self.apply_email(value)
        return self._apply(getattr(self, field), value, mask_as_email=False)

    def apply_id(self, value: Optional[str]) -> Optional[str]:
        return self._apply(self.id, value, mask_as_email=False)

    def apply_name(self, value: Optional[str]) -> Optional[str]:
        return self._apply(self.name, value, mask_as_email=False)

    def apply_email(self, value: Optional[str]) -> Optional[str]:
        if value is not None and self.email == "hash":
            value = value.strip().lower()
        return self._apply(self.email, value, mask_as_email=True)

    @property
    def exports_extra(self) -> bool:
        """Whether any extra user field can leave the process under this policy."""
        return self._exports_extra

    def extra_mode(self, name: str) -> str:
        """The mode of the extra user field ``name``: the one ``extra`` names, else ``extra_default``."""
        return self._extra_modes.get(name, self.extra_default)

    def apply_extra(self, name: str, value: ExtraValue) -> Optional[ExtraValue]:
        """The extra user field ``name`` as the policy exports it, or None.

        "keep" keeps the value's type (text, bool, int, float); "hash" and "mask" work on its text.
        """
        mode = self._extra_modes.get(name, self.extra_default)
        if mode == "drop" or value is None or value == "":
            return None
        if mode == "keep":
            return value
        text = value if isinstance(value, str) else str(value)
        return self.hash(text) if mode == "hash" else mask_name(text)

    def apply_ip(self, address: Optional[str]) -> Optional[str]:
        """The client address as the policy exports it, or None."""
        if address is None or self.ip == "drop":
            return None
        if self.ip == "keep":
            return address
        return anonymize_ip(address)

    def hash(self, value: str) -> str:
        """Lowercase hex HMAC-SHA256 of ``value`` under the policy's key."""
        if self._key is None:
            raise ValueError(f"TagPolicy has no hash_key; pass hash_key=... or set {HASH_KEY_ENV}")
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def _apply(self, mode: str, value: Optional[str], *, mask_as_email: bool) -> Optional[str]:
        if value is None or value == "" or mode == "drop":
            return None
        if mode == "keep":
            return value
        if mode == "hash":
            return self.hash(value)
        return mask_email(value) if mask_as_email else mask_name(value)


def extra_name_error(name: object) -> Optional[str]:
    """What is wrong with ``name`` as an extra user field's name, or None when it is fine."""
    if not isinstance(name, str) or not EXTRA_NAME.fullmatch(name):
        return "is not 1-64 characters of a-z, 0-9, '_' and '.'"
    if name in RESERVED_EXTRA_NAMES:
        return "is a built-in user field; set its mode with TagPolicy(id=..., name=..., email=..., roles=...)"
    return None


def _extra_modes(extra: Any) -> dict[str, str]:
    """``TagPolicy.extra`` (a mapping or (name, mode) pairs) as a checked dict."""
    wrong = f"TagPolicy.extra={extra!r} is not a mapping; use e.g. extra={{'plan': 'keep', 'org_id': 'hash'}}"
    if isinstance(extra, (str, bytes)):
        raise ValueError(wrong)
    try:
        modes = dict(extra.items() if isinstance(extra, Mapping) else extra)
    except (TypeError, ValueError):
        raise ValueError(wrong) from None
    if len(modes) > MAX_EXTRA_FIELDS:
        raise ValueError(f"TagPolicy.extra names {len(modes)} fields; name at most {MAX_EXTRA_FIELDS}")
    for name, mode in modes.items():
        problem = extra_name_error(name)
        if problem:
            raise ValueError(f"TagPolicy.extra: {name!r} {problem}")
        if mode not in FIELD_MODES:
            raise ValueError(
                f"TagPolicy.extra[{name!r}]={mode!r} is not a mode; use one of {', '.join(FIELD_MODES)}"
            )
    return modes


def mask_email(value: str) -> str:
    """``jane@example.com`` becomes ``j***@example.com``; a value without ``@`` is masked as a name."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local:
        return mask_name(value)
    return f"{local[0]}***@{domain}"


def mask_name(value: str) -> str:
    """Keep the first character, then ``***``."""
    text = value.strip()
    return f"{text[0]}***" if text else "***"


@functools.lru_cache(maxsize=4096)
def anonymize_ip(address: str) -> Optional[str]:
    """IPv4 keeps its /24 (last octet 0), IPv6 its /48; anything unparsable becomes None."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)

"""The server span's HTTP attributes and name, as ``opentelemetry-instrumentation-asgi`` makes
them, in a fraction of the time.

The contrib helpers (``collect_request_attributes``, ``get_default_span_details``,
``set_status_code``) cost about 30 µs a request, a third of the whole middleware: they scan
the headers three times decoding every name, parse the URL twice to redact it, read the
environment for the method list, detect synthetic user agents by substring search, and check
the semantic-convention mode once per attribute. ``HttpSemconv`` computes the same values in
one pass for the requests servers actually send (lower-case header names, UTF-8 values, a
``(host, port)`` server), remembering what repeats (a method's attributes, a user agent's),
and hands anything else to the contrib function itself.

Those helpers change between releases, so the fast path proves itself against the installed
one before it is used: at start-up both run on a set of probe requests covering every branch,
and if they ever disagree the contrib functions serve every request (tests/test_semconv.py
compares them on generated requests, on the oldest and the newest supported releases).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import unquote

from opentelemetry.instrumentation import asgi as contrib
from opentelemetry.instrumentation._semconv import _report_new, _report_old
from opentelemetry.sdk.trace import Span as _SDKSpan
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.http import sanitize_method

from ..types import Scope

try:
    from opentelemetry.util.http import redact_url
except ImportError:  # opentelemetry-util-http < 0.57b0 only removed credentials
    from opentelemetry.util.http import remove_url_credentials as redact_url

_logger = logging.getLogger(__name__)
_contrib: Any = contrib  # its helpers are untyped in some releases; looked up per call (tests patch them)

_MAX_REMEMBERED = 256  # methods and user agents remembered; others are computed each time
_MAX_REMEMBERED_AGENT = 512  # characters: longer user agents are not remembered
_UNSET = Status(StatusCode.UNSET)
# The SDK span ignores a status set to UNSET; set on one, it would only cost its lock.
_SDK_SET_STATUS = _SDKSpan.set_status
# The old and the new semantic convention's names of the attributes both carry.
_OLD_AND_NEW = {
    "scheme": ("http.scheme", "url.scheme"),
    "host": ("http.host", "server.address"),
    "port": ("net.host.port", "server.port"),
    "flavor": ("http.flavor", "network.protocol.version"),
    "peer_port": ("net.peer.port", "client.port"),
    "method": ("http.method", "http.request.method"),
    "agent": ("http.user_agent", "user_agent.original"),
    "status": ("http.status_code", "http.response.status_code"),
}
_HOST = b"host"
_USER_AGENT = b"user-agent"
_PROBE_LENGTHS = frozenset({len(_HOST), len(_USER_AGENT)})

# Only newer releases detect synthetic user agents; the probes tell whether the installed one does.
_detect_synthetic: Optional[Callable[[Optional[str]], Optional[str]]] = getattr(
    contrib, "detect_synthetic_user_agent", None
)
_normalize_agent: Callable[[Any], Optional[str]] = getattr(
    contrib, "normalize_user_agent", lambda value: value
)
_SYNTHETIC_KEY: str = getattr(contrib, "USER_AGENT_SYNTHETIC_TYPE", "user_agent.synthetic.type")


class HttpSemconv:
    """The contrib ASGI middleware's request attributes, span name and status, for one semconv mode.

    Args:
        mode: The HTTP semantic-convention opt-in mode (``OTEL_SEMCONV_STABILITY_OPT_IN``).
    """

    def __init__(self, mode: Any) -> None:
        self.mode = mode
        self._old = _report_old(mode)
        self._new = _report_new(mode)
        # Each attribute's key(s) in this mode: the old convention's, the new one's, or both.
        self._keys = {
            name: tuple(key for key, wanted in zip(pair, (self._old, self._new)) if wanted)
            for name, pair in _OLD_AND_NEW.items()
        }
        # method as sent -> (its sanitized form, its span attributes)
        self._methods: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
        self._agents: dict[bytes, tuple[tuple[str, str], ...]] = {}
        self.fast = True
        self.fast = self._agrees_with_contrib()

    # -- request attributes -------------------------------------------------------------

    def request_attributes(self, scope: Scope) -> dict[str, Any]:
        """What ``collect_request_attributes(scope, mode)`` returns (and raises)."""
        if self.fast:
            try:
                result = self._request_attributes(scope)
            except (AttributeError, LookupError, TypeError, ValueError):
                result = None  # whatever it is, the contrib function decides how it fails
            if result is not None:
                return result
        attributes: dict[str, Any] = _contrib.collect_request_attributes(scope, self.mode)
        return attributes

    def _request_attributes(self, scope: Scope) -> Optional[dict[str, Any]]:
        """The attributes of a well-formed request; None for anything the contrib function must see."""
        hosts: list[str] = []
        agent: Optional[bytes] = None
        for name, value in scope.get("headers") or ():
            if type(name) is not bytes or type(value) is not bytes:
                return None
            if name == _HOST:
                hosts.append(value.decode())  # not UTF-8: ValueError, the contrib function decides
            elif name == _USER_AGENT:
                if agent is None:
                    agent = value
            elif len(name) in _PROBE_LENGTHS and name.lower() in (_HOST, _USER_AGENT):
                return None  # a header name in capitals: the contrib getter lower-cases names
        server = scope.get("server") or ("0.0.0.0", 80)
        port = server[1]
        server_host = server[0] + (":" + str(port) if str(port) != "80" else "")
        path = scope.get("path", "")
        http_url = scope.get("scheme", "http") + "://" + (hosts[0] if hosts else server_host) + path
        query = scope.get("query_string")
        if query:
            if isinstance(query, bytes):
                query = query.decode("utf8")
            http_url += "?" + unquote(query)

        keys = self._keys
        result: dict[str, Any] = {}
        scheme = scope.get("scheme")
        if scheme:
            for key in keys["scheme"]:
                result[key] = scheme
        if server_host:
            for key in keys["host"]:
                result[key] = server_host
        if port:
            _set_int(result, keys["port"], port)
        flavor = scope.get("http_version")
        if flavor:
            for key in keys["flavor"]:
                result[key] = flavor
        if path:
            if self._old:
                result["http.target"] = path
            if self._new:
                result["url.path"] = path
                if query:
                    result["url.query"] = query
        if self._old:
            if "@" in http_url or "?" in http_url or "#" in http_url:
                http_url = redact_url(http_url)
            result["http.url"] = http_url
        method = scope.get("method", "")
        if method:
            result.update(self.method_attributes(method))
        if hosts and self._old:
            result["http.server_name"] = ",".join(hosts)
        if agent is not None:
            result.update(self.agent_attributes(agent))
        if "client" in scope and scope["client"] is not None:
            client = scope["client"]
            address, client_port = client[0], client[1]
            if address:
                if self._old:
                    result["net.peer.ip"] = address
                if self._new and not result.get("client.address"):
                    result["client.address"] = address
            if client_port:
                _set_int(result, keys["peer_port"], client_port)
        return result

    def sanitized_method(self, method: str) -> str:
        """``sanitize_method(method)``: the method as the span and the metrics name it, or ``_OTHER``.

        Remembered per method, so ``OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS`` is read
        when a method is first seen (the contrib helper reads it per call).
        """
        return self._method(method)[0]

    def _method(self, method: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The sanitized method and the method attributes, computed once per method sent."""
        remembered = self._methods.get(method)
        if remembered is not None:
            return remembered
        sanitized = sanitize_method(method)
        original, normalized = method.strip(), sanitized.strip()
        pairs: list[tuple[str, str]] = []
        if original != normalized and self._new and original:
            pairs.append(("http.request.method_original", original))
        if normalized:
            pairs.extend((key, normalized) for key in self._keys["method"])
        return _remember(self._methods, method, (sanitized, tuple(pairs)))

    def method_attributes(self, method: str) -> tuple[tuple[str, str], ...]:
        """The span attributes of the request method ``method`` as sent (remembered per method)."""
        return self._method(method)[1]

    def agent_attributes(self, raw: bytes) -> tuple[tuple[str, str], ...]:
        """The span attributes of a ``User-Agent`` value (remembered per value, if short)."""
        remembered = self._agents.get(raw)
        if remembered is not None:
            return remembered
        value = _normalize_agent(raw.decode())
        pairs: list[tuple[str, str]] = []
        if value:
            pairs.extend((key, value) for key in self._keys["agent"])
        synthetic = _detect_synthetic(value) if _detect_synthetic is not None else None
        if synthetic:
            pairs.append((_SYNTHETIC_KEY, synthetic))
        if len(raw) > _MAX_REMEMBERED_AGENT:
            return tuple(pairs)
        return _remember(self._agents, raw, tuple(pairs))

    # -- name and status ----------------------------------------------------------------

    def span_name(self, scope: Scope) -> str:
        """What ``get_default_span_details(scope)`` names the span (its attributes are always empty)."""
        if self.fast:
            try:
                path = scope.get("path", "").strip()
                shown = self.sanitized_method(scope.get("method", "").strip())
                if shown == "_OTHER":
                    shown = "HTTP"
                if shown and path:
                    return f"{shown} {path}"
                return path or shown
            except (AttributeError, TypeError):
                pass
        name: str = _contrib.get_default_span_details(scope)[0]
        return name

    def set_status(self, span: Span, status: int) -> None:
        """What ``set_status_code(span, status, None, mode)`` does, for a server span."""
        if self.fast and type(status) is int and 100 <= status < 500:
            # A status the server span does not count as an error: the attribute(s), and the
            # span status set to UNSET as the contrib middleware does.
            for key in self._keys["status"]:
                span.set_attribute(key, status)
            if getattr(type(span), "set_status", None) is not _SDK_SET_STATUS:
                span.set_status(_UNSET)
            return
        _contrib.set_status_code(span, status, None, self.mode)

    # -- the proof ----------------------------------------------------------------------

    def _agrees_with_contrib(self) -> bool:
        """Whether the fast path gives the contrib functions' answers on every probe request."""
        agrees = True
        for scope in _probes():
            expected = _outcome(_contrib.collect_request_attributes, scope, self.mode)
            expected_name = _outcome(lambda probe: _contrib.get_default_span_details(probe)[0], scope)
            if (
                _outcome(self.request_attributes, scope) != expected
                or _outcome(self.span_name, scope) != expected_name
            ):
                _logger.debug(
                    "otel_user_tracking: the installed opentelemetry-instrumentation-asgi differs from "
                    "the fast path on %r; its own functions make every span's attributes",
                    scope,
                )
                agrees = False
                break
        self.forget()  # what the probes taught the caches is not what requests will ask
        return agrees

    def forget(self) -> None:
        """Empty the remembered methods and user agents."""
        self._methods.clear()
        self._agents.clear()


def _outcome(function: Callable[..., Any], *args: Any) -> Any:
    """What a call returns, or the type of the exception it raises."""
    try:
        return function(*args)
    except Exception as exc:
        return type(exc)


def _set_int(result: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """The contrib ``set_int_attribute`` under each key: a value that is no integer is left out."""
    try:
        number = int(value)
    except (ValueError, TypeError):
        return
    for key in keys:
        result[key] = number


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) < _MAX_REMEMBERED:
        cache[key] = value
    return value


def _probes() -> list[Scope]:
    """Requests that take every branch of the contrib functions the fast path mirrors."""
    base: Scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/7",
        "raw_path": b"/users/7",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.9", 50000),
        "headers": [
            (b"host", b"example.com"),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"),
            (b"accept", b"*/*"),
        ],
    }
    variants: list[dict[str, Any]] = [
        {},
        {"query_string": b"q=caf%C3%A9+au+lait&sig=abc&page=2"},
        {"query_string": b"AWSAccessKeyId=AKIA&Signature=s3cr3t&x-goog-signature=1"},
        {"headers": [(b"host", b"user:pass@example.com:8443")]},
        {"headers": [(b"host", b"a.example"), (b"host", b"b.example"), (b"user-agent", b"")]},
        {"headers": [(b"user-agent", b"Googlebot/2.1 (+http://www.google.com/bot.html)")]},
        {"headers": [(b"user-agent", b"python-requests/2.32 alwayson test")]},
        {"headers": [(b"Host", b"upper.example"), (b"User-Agent", b"curl/8")]},
        {"headers": []},
        {"server": ("10.1.1.1", 80), "scheme": "https", "http_version": "2"},
        {"server": None, "client": None},
        {"server": ("::1", 443), "client": ("::1", 0)},
        {"method": "get"},
        {"method": "PURGE"},
        {"method": " POST "},
        {"method": ""},
        {"path": "", "query_string": b"a=1"},
        {"path": "/a b/%3F?#frag"},
        {"type": "websocket", "scheme": "ws", "method": None},
    ]
    probes: list[Scope] = []
    for variant in variants:
        scope = {**base, **variant}
        if scope.get("method") is None:
            scope.pop("method")
        probes.append(scope)
    return probes

"""The WSGI server span's request attributes and name, as ``opentelemetry-instrumentation-wsgi``
makes them, in a fraction of the time.

``collect_request_attributes`` costs about 30 µs a request (a third of what the WSGI door
adds): it sanitizes the method reading the environment each time, and checks the
semantic-convention mode once per attribute. ``WSGISemconv`` computes the same dict in one pass
for environs with a request target (``RAW_URI`` or ``REQUEST_URI``, which gunicorn and
Werkzeug set), remembering what repeats (a method's attributes, a user agent's), and hands any
other environ to the contrib function itself.

As ``semconv.py`` does for the ASGI helpers, the fast path proves itself against the installed
release before it is used: both run on probe environs covering every branch, and if they ever
disagree the contrib functions serve every request.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from opentelemetry.instrumentation import wsgi as contrib
from opentelemetry.instrumentation._semconv import _report_new, _report_old

from ..types import Environ
from .semconv import HttpSemconv, _outcome, _set_int

_logger = logging.getLogger(__name__)
_contrib: Any = contrib  # looked up per call (tests patch it)
_HTTP_PREFIX = "HTTP/"
# The old and the new semantic convention's names of the attributes both carry.
_OLD_AND_NEW = {
    "scheme": ("http.scheme", "url.scheme"),
    "host": ("net.host.name", "server.address"),
    "port": ("net.host.port", "server.port"),
    "peer_port": ("net.peer.port", "client.port"),
    "flavor": ("http.flavor", "network.protocol.version"),
}


class WSGISemconv:
    """The contrib WSGI middleware's request attributes and span name, for one semconv mode.

    Args:
        http: The ASGI side's ``HttpSemconv`` for the same mode: the method's and the user
            agent's attributes are the same on both, and it remembers them.
    """

    def __init__(self, http: HttpSemconv) -> None:
        self.mode = mode = http.mode
        self._old = _report_old(mode)
        self._new = _report_new(mode)
        self._http = http
        self._keys = {
            name: tuple(key for key, wanted in zip(pair, (self._old, self._new)) if wanted)
            for name, pair in _OLD_AND_NEW.items()
        }
        self.fast = True
        self.fast = self._agrees_with_contrib()

    def request_attributes(self, environ: Environ) -> dict[str, Any]:
        """What ``collect_request_attributes(environ, mode)`` returns (and raises)."""
        if self.fast and (environ.get("RAW_URI") or environ.get("REQUEST_URI")):
            try:
                result = self._request_attributes(environ)
            except (AttributeError, LookupError, TypeError):
                result = None  # whatever it is, the contrib function decides how it fails
            if result is not None:
                return result
        attributes: dict[str, Any] = _contrib.collect_request_attributes(environ, self.mode)
        return attributes

    def _request_attributes(self, environ: Environ) -> Optional[dict[str, Any]]:
        get = environ.get
        keys = self._keys
        result: dict[str, Any] = dict(self._http.method_attributes(get("REQUEST_METHOD", "")))
        if self._old:
            result["http.server_name"] = get("SERVER_NAME")
        scheme = get("wsgi.url_scheme")
        if scheme:
            for key in keys["scheme"]:
                result[key] = scheme
        host = get("HTTP_HOST")
        if host:
            for key in keys["host"]:
                result[key] = host
            if self._old:
                result["http.host"] = host
        host_port = get("SERVER_PORT")
        if host_port:
            port = int(host_port)  # as contrib: a port that is no number raises ValueError
            if port:
                for key in keys["port"]:
                    result[key] = port
        target = get("RAW_URI")
        if target is None:
            target = get("REQUEST_URI")
        if not target:
            return None
        if self._old:
            result["http.target"] = target
        if self._new:
            path, query = get("PATH_INFO"), get("QUERY_STRING")
            if path:
                result["url.path"] = path
            if query:
                result["url.query"] = query
        remote_addr = get("REMOTE_ADDR")
        if remote_addr:
            if self._old:
                result["net.peer.ip"] = remote_addr
            if self._new and not result.get("client.address"):
                result["client.address"] = remote_addr
        peer_port = get("REMOTE_PORT")
        if peer_port:
            _set_int(result, keys["peer_port"], peer_port)
        remote_host = get("REMOTE_HOST")
        if remote_host and remote_host != remote_addr:
            if self._old:
                result["net.peer.name"] = remote_host
            if self._new:
                result["client.address"] = remote_host
        agent = get("HTTP_USER_AGENT")
        if agent:
            try:
                raw = agent.encode()  # what the ASGI side remembers agents by; it decodes them back
            except UnicodeError:  # a lone surrogate: the contrib function decides
                return None
            result.update(self._http.agent_attributes(raw))
        flavor = get("SERVER_PROTOCOL", "")
        if flavor.upper().startswith(_HTTP_PREFIX):
            flavor = flavor[len(_HTTP_PREFIX) :]
        if flavor:
            for key in keys["flavor"]:
                result[key] = flavor
        return result

    def span_name(self, environ: Environ) -> str:
        """What ``get_default_span_name(environ)`` names the span."""
        if self.fast:
            try:
                method = self._http.sanitized_method(environ.get("REQUEST_METHOD", "").strip())
                if method == "_OTHER":
                    return "HTTP"
                path = environ.get("PATH_INFO", "").strip()
                return f"{method} {path}" if method and path else method
            except (AttributeError, TypeError):
                pass
        name: str = _contrib.get_default_span_name(environ)
        return name

    def _agrees_with_contrib(self) -> bool:
        http = self._http
        """Whether the fast path gives the contrib functions' answers on every probe environ."""
        agrees = True
        for environ in _probes():
            if _outcome(self.request_attributes, environ) != _outcome(
                _contrib.collect_request_attributes, environ, self.mode
            ) or _outcome(self.span_name, environ) != _outcome(_contrib.get_default_span_name, environ):
                _logger.debug(
                    "otel_user_tracking: the installed opentelemetry-instrumentation-wsgi differs from "
                    "the fast path on %r; its own functions make every span's attributes",
                    environ,
                )
                agrees = False
                break
        http.forget()  # what the probes taught the caches is not what requests will ask
        return agrees


def _probes() -> list[Environ]:
    """Environs that take every branch of the contrib functions the fast path mirrors."""
    base: Environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/users/7",
        "QUERY_STRING": "",
        "RAW_URI": "/users/7",
        "SERVER_NAME": "0.0.0.0",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.9",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "example.com",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
        "wsgi.url_scheme": "http",
    }
    variants: list[dict[str, Any]] = [
        {},
        {
            "RAW_URI": "/s?q=caf%C3%A9+au+lait&sig=abc",
            "PATH_INFO": "/s",
            "QUERY_STRING": "q=caf%C3%A9+au+lait&sig=abc",
        },
        {"RAW_URI": None, "REQUEST_URI": "/users/7?a=1", "QUERY_STRING": "a=1"},
        {"HTTP_HOST": "user:pass@example.com:8443", "wsgi.url_scheme": "https", "SERVER_PORT": "443"},
        {"HTTP_HOST": None, "SERVER_PORT": "0", "SERVER_NAME": None},
        {"HTTP_USER_AGENT": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        {"HTTP_USER_AGENT": "python-requests/2.32 alwayson test"},
        {"HTTP_USER_AGENT": "  "},
        {"HTTP_USER_AGENT": None},
        {"REMOTE_HOST": "client.example", "REMOTE_PORT": "x"},
        {"REMOTE_HOST": "10.0.0.9", "REMOTE_ADDR": None, "REMOTE_PORT": None},
        {"SERVER_PROTOCOL": "http/2"},
        {"SERVER_PROTOCOL": "HTTP/"},
        {"SERVER_PROTOCOL": "SPDY/3"},
        {"REQUEST_METHOD": "get"},
        {"REQUEST_METHOD": "PURGE"},
        {"REQUEST_METHOD": " POST "},
        {"REQUEST_METHOD": ""},
        {"PATH_INFO": "", "RAW_URI": "/"},
        {"PATH_INFO": " /a b/ "},
    ]
    probes: list[Environ] = []
    for variant in variants:
        environ = {**base, **variant}
        probes.append({key: value for key, value in environ.items() if value is not None})
    return probes

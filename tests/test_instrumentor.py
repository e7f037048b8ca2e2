"""The instrumentor's lifecycle, programmatic middleware use, and the public API."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_user_tracking as out
from otel_user_tracking import testing
from otel_user_tracking.config import reset_config
from otel_user_tracking.frameworks import ADAPTERS

from ._apps import bearer, fastapi_app, get, instrumented, new_tracing


def _plain_app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])


def test_public_api_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert out.__all__ == sorted(out.__all__)
    for name in out.__all__:
        assert hasattr(out, name)


def test_apps_created_before_instrumentation_are_instrumented() -> None:
    """Patching Starlette.__call__ covers apps that existed before instrument()."""
    tracing = new_tracing()
    app = _plain_app()
    with instrumented(tracing):
        assert get(app, "/").text == "ok"
    assert len(tracing.server_spans()) == 1


def test_the_providers_force_flush_succeeds_with_our_processors() -> None:
    """provider.force_flush() is True with the instrumentation installed, on every supported SDK."""
    tracing = new_tracing()
    with instrumented(tracing):
        assert get(fastapi_app(tracing), "/public").status_code == 200
        assert tracing.provider.force_flush(5_000)


def test_uninstrument_restores_starlette_and_stops_tracing() -> None:
    """After uninstrument() requests make no spans and Starlette.__call__ is the original."""
    original = Starlette.__call__
    tracing = new_tracing()
    app = _plain_app()
    with instrumented(tracing):
        assert Starlette.__call__ is not original
        get(app, "/")
    assert Starlette.__call__ is original
    get(app, "/")
    assert len(tracing.server_spans()) == 1


def test_instrument_bug_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter that fails to install is logged and counted per framework, never raised to the loader."""
    import otel_user_tracking.frameworks.starlette as patching

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(patching.StarlettePatch, "__init__", broken)
    instrumentor = out.UserTrackingInstrumentor()
    with testing.internal_errors_raise(False):
        instrumentor.instrument(tracer_provider=new_tracing().provider, analytics=False)
    try:
        assert out.internal_error_counts()["install.starlette"] == 1
    finally:
        instrumentor.uninstrument()


def test_bad_configuration_stops_instrumentation_with_the_fix() -> None:
    """instrument() with an invalid option stops with a message naming the problem."""
    with pytest.raises(ValueError, match="tag_policy"):
        out.UserTrackingInstrumentor().instrument(tag_policy="strict", analytics=False)
    reset_config()


def test_middleware_by_hand_on_any_asgi_app() -> None:
    """UserTrackingMiddleware wraps a bare ASGI app: one tagged server span per request."""
    tracing = new_tracing()

    async def bare_app(scope: Any, receive: Any, send: Any) -> None:
        out.set_user(id="by-hand")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = out.UserTrackingMiddleware(
        bare_app, tracer_provider=tracing.provider, tag_policy=out.TagPolicy(id="mask")
    )
    assert get(app, "/anything").text == "ok"
    [span] = tracing.server_spans()
    assert span.attributes["user.id"] == "b***"


def test_middleware_rejects_bad_options_at_construction() -> None:
    """A bad option to UserTrackingMiddleware fails when the app is built, not per request."""
    with pytest.raises(ValueError, match="min_status_to_capture"):
        out.UserTrackingMiddleware(_plain_app(), min_status_to_capture=42)


def test_internal_send_receive_spans_are_off_by_default_and_can_be_enabled() -> None:
    """The ASGI middleware's http send/receive spans appear only with internal_spans=True."""
    for enabled in (False, True):
        tracing = new_tracing()
        with instrumented(tracing, internal_spans=enabled):
            get(fastapi_app(tracing), "/me", headers=bearer("tok-jane"))
        internal = [span for span in tracing.spans() if span.name.endswith((" send", " receive"))]
        assert bool(internal) is enabled


def test_uninstrument_restores_what_the_fastapi_litestar_and_quart_adapters_patched() -> None:
    """instrument() patches FastAPI's solve_dependencies and Litestar's and Quart's entry points;
    uninstrument() puts each back."""
    import fastapi.routing

    targets: list[tuple[Any, str]] = [(fastapi.routing, "solve_dependencies")]
    others = (
        ("litestar", "Litestar", ("__call__",)),
        ("quart", "Quart", ("__call__", "handle_user_exception")),
    )
    for module, cls, names in others:
        adapter = next(a for a in ADAPTERS if a.name == module)
        if adapter.installed():
            owner = getattr(importlib.import_module(module), cls)
            targets += [(owner, name) for name in names]
    originals = [getattr(owner, name) for owner, name in targets]
    instrumentor = out.UserTrackingInstrumentor()
    instrumentor.instrument(tracer_provider=new_tracing().provider, analytics=False)
    try:
        patched = [getattr(owner, name) for owner, name in targets]
    finally:
        instrumentor.uninstrument()
    assert not any(now is before for now, before in zip(patched, originals))
    assert [getattr(owner, name) for owner, name in targets] == originals

"""The Quart adapter reads quart-auth's user only once quart-auth has loaded it, never loading it itself."""

from __future__ import annotations

import asyncio

import pytest

from ._framework_runs import skip_unless_supported


def test_the_quart_auth_user_is_read_only_once_loaded_and_never_loaded_for_us(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before quart-auth resolves the user, the adapter sees none and resolves nothing; after, it reads it."""
    skip_unless_supported("quart", ("quart", "quart_auth"))
    from quart import Quart
    from quart_auth import AuthUser, QuartAuth, current_user

    from otel_user_tracking.frameworks.quart import loaded_auth_user

    app = Quart(__name__)
    app.secret_key = "test-secret-0123456789"
    extension = QuartAuth(app)
    resolved: list[AuthUser] = []

    def resolve_user() -> AuthUser:
        user = AuthUser("42")
        resolved.append(user)
        return user

    monkeypatch.setattr(extension, "resolve_user", resolve_user)

    async def check() -> tuple[object, object]:
        async with app.test_request_context("/books/7"):
            before = loaded_auth_user(app)
            assert current_user.auth_id == "42"  # the app's own access loads it
            return before, loaded_auth_user(app)

    before, after = asyncio.run(check())
    assert before is None
    assert after == {"id": "42"}
    assert len(resolved) == 1

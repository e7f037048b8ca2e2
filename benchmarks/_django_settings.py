"""The Django app ``bench_frameworks.py`` serves: its settings, URLconf and view in one module.

``GET /users/<id>`` answers a short JSON body for a logged-in user: a middleware sets
``request.user`` as an authentication middleware that already loaded it would, so ours has a
user to read and no database is involved. The WSGI application is ``_django_app.py``'s: a
settings module must not build it, since contrib's instrumentor imports the settings while it
loads, before ours patches Django's handlers.
"""

from __future__ import annotations

from typing import Any, Callable

from _bench_user import USER
from django.http import JsonResponse
from django.urls import path

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["_django_settings.logged_in"]
ROOT_URLCONF = "_django_settings"
DATABASES: dict[str, Any] = {}
USE_TZ = True


def logged_in(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def middleware(request: Any) -> Any:
        request.user = USER
        return get_response(request)

    return middleware


def _user(request: Any, user_id: int) -> JsonResponse:
    return JsonResponse({"id": user_id, "name": "Jane Roe"})


urlpatterns = [path("users/<int:user_id>", _user)]

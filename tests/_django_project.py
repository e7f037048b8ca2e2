"""A small Django project written into a directory, for tests that run it under real servers.

Usage::

    project = write_project(tmp_path)          # manage.py, site_config/, a sqlite DB in tmp_path
    migrate_and_create_user(project)           # once per module: tables and the user "jane"
    # then: uvicorn site_config.asgi:application, gunicorn site_config.wsgi, manage.py runserver

Its views: ``login/`` (POST, Django's own ``authenticate`` + ``login``), ``""`` (public, never
touches ``request.user``), ``catalog/book/<int:pk>/`` (included under a prefix, reads
``request.user``), ``archive/<year>/`` (a ``re_path``), ``boom/`` (raises: Django's 500 page),
``handled/`` (raises; the project's middleware answers with its own 500), ``queries/`` (how
many SQL statements the process has run, counted on every database connection).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

from ._uvicorn import base_env

USERNAME = "jane"
PASSWORD = "correct horse battery"
EMAIL = "jane@example.com"
GROUP = "editors"
SETTINGS_MODULE = "site_config.settings"

FILES = {
    "manage.py": """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """,
    "site_config/__init__.py": "",
    "site_config/settings.py": """
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "test-only-not-secret"
        DEBUG = False
        ALLOWED_HOSTS = ["*"]
        INSTALLED_APPS = [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ]
        MIDDLEWARE = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "site_config.middleware.OwnErrorPage",
        ]
        AUTHENTICATION_BACKENDS = ["site_config.auth.GroupsPrefetchingBackend"]
        ROOT_URLCONF = "site_config.urls"
        WSGI_APPLICATION = "site_config.wsgi.application"
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
        USE_TZ = True
        PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        LOGGING = {"version": 1, "disable_existing_loggers": False,
                   "loggers": {"django.request": {"level": "CRITICAL"}}}

        from . import queries  # noqa: E402,F401  (counts every SQL statement of the process)
    """,
    "site_config/queries.py": """
        from django.db.backends.signals import connection_created

        statements = []


        def count(execute, sql, params, many, context):
            statements.append(sql)
            return execute(sql, params, many, context)


        def install_counter(sender, connection, **kwargs):
            connection.execute_wrappers.append(count)


        connection_created.connect(install_counter)
    """,
    "site_config/auth.py": """
        from django.contrib.auth.backends import ModelBackend
        from django.contrib.auth.models import User


        class GroupsPrefetchingBackend(ModelBackend):
            \"\"\"Loads the request's user with its groups, so their names can become roles.\"\"\"

            def get_user(self, user_id):
                return User.objects.prefetch_related("groups").filter(pk=user_id).first()
    """,
    "site_config/middleware.py": """
        from django.http import JsonResponse


        class AppError(Exception):
            pass


        class OwnErrorPage:
            def __init__(self, get_response):
                self.get_response = get_response

            def __call__(self, request):
                return self.get_response(request)

            def process_exception(self, request, exception):
                if isinstance(exception, AppError):
                    return JsonResponse({"error": "handled"}, status=500)
                return None
    """,
    "site_config/views.py": """
        from django.contrib.auth import authenticate, login
        from django.http import HttpResponse, JsonResponse

        from . import queries
        from .middleware import AppError


        def login_view(request):
            user = authenticate(request, username=request.POST.get("username"),
                                password=request.POST.get("password"))
            if user is None:
                return JsonResponse({"error": "bad credentials"}, status=401)
            login(request, user)
            return JsonResponse({"id": user.pk})


        def public(request):
            return HttpResponse("hello")


        def book(request, pk):
            return JsonResponse({"book": pk, "reader": request.user.get_username()})


        def query_count(request):
            return JsonResponse({"statements": len(queries.statements)})


        def archive(request, year):
            return JsonResponse({"year": year})


        def boom(request):
            raise RuntimeError("kaboom")


        def handled(request):
            raise AppError("answered by the middleware")
    """,
    "site_config/catalog_urls.py": """
        from django.urls import path

        from . import views

        urlpatterns = [path("book/<int:pk>/", views.book, name="book")]
    """,
    "site_config/urls.py": """
        from django.urls import include, path, re_path

        from . import views

        urlpatterns = [
            path("", views.public),
            path("login/", views.login_view),
            path("catalog/", include("site_config.catalog_urls")),
            re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive),
            path("boom/", views.boom),
            path("handled/", views.handled),
            path("queries/", views.query_count),
        ]
    """,
    "site_config/asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
        application = get_asgi_application()
    """,
    "site_config/wsgi.py": """
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
        application = get_wsgi_application()
    """,
}

ROUTES = {
    "/catalog/book/1/": "catalog/book/<int:pk>/",
    "/archive/2024/": "^archive/(?P<year>[0-9]{4})/$",
    "/boom/": "boom/",
    "/handled/": "handled/",
    "/login/": "login/",
}

_SETUP = f"""
import django
django.setup()
from django.contrib.auth.models import Group, User
from django.core.management import call_command
call_command("migrate", verbosity=0)
user = User.objects.create_user({USERNAME!r}, {EMAIL!r}, {PASSWORD!r})
user.groups.add(Group.objects.create(name={GROUP!r}))
"""


def write_project(directory: Path) -> Path:
    """Write the project into ``directory`` and return it."""
    for name, source in FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    return directory


def migrate_and_create_user(project: Path, env: Optional[dict[str, str]] = None) -> None:
    """Create the tables and the user ``jane`` (in the group ``editors``), in a subprocess."""
    subprocess.run(
        [sys.executable, "-c", _SETUP],
        cwd=project,
        env=base_env({"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, "PYTHONPATH": str(project), **(env or {})}),
        check=True,
        timeout=60,
    )

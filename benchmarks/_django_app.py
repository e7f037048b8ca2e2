"""The WSGI application of ``_django_settings.py``'s Django app, for gunicorn."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_django_settings")
application = get_wsgi_application()

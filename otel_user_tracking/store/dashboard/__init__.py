"""The dashboard of the embedded store: traffic, sources, errors and one person's journey, as one page."""

from __future__ import annotations

from .journey import UserIdForm, journey
from .page import DEFAULT_JAEGER_URL, JourneyView, PageOptions, render_page
from .queries import Dashboard, Window, build_dashboard
from .server import DashboardServer, dashboard_html

__all__ = [
    "DEFAULT_JAEGER_URL",
    "Dashboard",
    "DashboardServer",
    "JourneyView",
    "PageOptions",
    "UserIdForm",
    "Window",
    "build_dashboard",
    "dashboard_html",
    "journey",
    "render_page",
]

"""The dashboard as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

The same page is served live (refreshing itself with a meta refresh, with the journey
search) and written by ``report --html`` (a snapshot without either). Its Content Security
Policy forbids every request but a form post to its own server, so a locked-down or offline
browser shows it whole. Every value from the store goes through ``html.escape``; links carry
only stored values (trace ids, stored user/visitor/session ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from typing import Optional

from ..report import CountRow, iso_time
from . import svg
from .journey import IdKind, Step, UserIdForm
from .markup import STYLE, ms, section, short, table, trace_link
from .queries import Dashboard

DEFAULT_JAEGER_URL = "http://localhost:16686"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'"


@dataclass(frozen=True)
class JourneyView:
    """A journey search and its result: ``values`` are the stored forms that were searched;
    ``expired`` when the search's key is no longer known (the server restarted)."""

    kind: IdKind
    values: tuple[str, ...]
    steps: tuple[Step, ...]
    expired: bool = False


@dataclass(frozen=True)
class PageOptions:
    """How the page is rendered.

    Args:
        jaeger_url: Jaeger's UI; traces link to ``<jaeger_url>/trace/<trace_id>``.
        since_text: The window as the user gave it (``7d``), kept in links and the form.
        refresh_seconds: Reload interval of the live page; None for a file.
        live: Whether a server answers the journey search (False for ``report --html``).
        user_ids: How user ids are stored, to say what a search looks for.
        service: The ``service.name`` the page is filtered to (None: every service).
        environment: The deployment environment the page is filtered to (None: every one).
    """

    jaeger_url: str = DEFAULT_JAEGER_URL
    since_text: str = "7d"
    refresh_seconds: Optional[int] = None
    live: bool = False
    user_ids: UserIdForm = field(default_factory=UserIdForm)
    service: Optional[str] = None
    environment: Optional[str] = None


def render_page(dashboard: Dashboard, options: PageOptions, journey: Optional[JourneyView] = None) -> str:
    """The whole page as a string."""
    report = dashboard.report
    refresh = (
        f'<meta http-equiv="refresh" content="{options.refresh_seconds}">' if options.refresh_seconds else ""
    )
    sessions = report.sessions
    sections = [
        _services(dashboard, options),
        _kpis(dashboard),
        _traffic(dashboard),
        _count_table(
            "pages",
            "Top pages",
            ("page", "pageviews", "visitors"),
            [(row.page, row.pageviews, row.visitors) for row in report.routes],
        ),
        _count_table("referrers", "Referrers", ("referrer", "pageviews"), _pairs(report.referrers)),
        _count_table("locales", "Locales", ("locale", "pageviews"), _pairs(report.locales)),
        _count_table("utm-sources", "UTM sources", ("utm_source", "pageviews"), _pairs(report.utm_sources)),
        _count_table(
            "utm-campaigns", "UTM campaigns", ("utm_campaign", "pageviews"), _pairs(dashboard.campaigns)
        ),
        _count_table("utm-terms", "UTM terms", ("utm_term", "pageviews"), _pairs(dashboard.terms)),
        _count_table(
            "utm-contents", "UTM contents", ("utm_content", "pageviews"), _pairs(dashboard.contents)
        ),
        _count_table(
            "entry-pages",
            "Entry pages",
            ("page", "sessions"),
            [(row.page, row.sessions) for row in sessions.entry_pages],
        ),
        _count_table(
            "exit-pages",
            "Exit pages",
            ("page", "sessions"),
            [(row.page, row.sessions) for row in sessions.exit_pages],
        ),
        _devices(dashboard),
        _filtered(dashboard),
        _errors(dashboard, options),
        _custom(dashboard),
        _requests(dashboard),
        _journey(options, journey),
    ]
    name = dashboard.window.point_name
    points = {"hour": "hourly points", "day": "daily points"}.get(name, f"a point per {name}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">{refresh}'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,"><title>otel-user-tracking dashboard</title>'
        f"<style>{STYLE}</style></head><body><header><h1>otel-user-tracking dashboard</h1>"
        f"<p>Since {escape(report.since)} ({escape(options.since_text)}, {points}), "
        f"generated {escape(dashboard.generated_at)}"
        + (f", refreshing every {options.refresh_seconds} s" if options.refresh_seconds else "")
        + f"</p></header><main>{''.join(sections)}</main></body></html>"
    )


def _pairs(rows: Sequence[CountRow]) -> list[tuple[object, ...]]:
    return [(row.value, row.count) for row in rows]


def _count_table(key: str, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return section(key, title, f'<p class="empty">No {escape(headers[0])} data yet in this window.</p>')
    return section(key, title, table(headers, rows))


def _kpis(dashboard: Dashboard) -> str:
    report, series = dashboard.report, dashboard.series
    visits = report.sessions
    tiles: list[tuple[str, object, Optional[int]]] = [
        ("pageviews", report.pageviews, sum(series.previous_pageviews)),
        ("unique visitors", report.visitors, series.previous_unique_visitors),
        ("sessions", visits.sessions, None),
        ("bounce rate %", _rounded(visits.bounce_rate, 100), None),
        ("views per session", _rounded(visits.views_per_session), None),
        ("median visit s", "—" if visits.median_duration_s is None else visits.median_duration_s, None),
        ("mean visit s", _rounded(visits.mean_duration_s), None),
        ("errors", report.errors, None),
        ("custom events", report.custom_events, None),
    ]
    body = "".join(
        f'<div class="kpi" data-kpi="{escape(name)}"><b>{value}</b>{escape(name)}'
        + (f"<br><small>previous period {previous}</small>" if previous is not None else "")
        + "</div>"
        for name, value, previous in tiles
    )
    note = (
        '<p class="note">A session is a visitor\'s pageviews less than 30 minutes apart, or the '
        "pageviews of a session id the app sends; a bounce is a session of one pageview; a visit "
        "lasts from its first pageview to its last.</p>"
    )
    return section("kpis", "Totals", f'<div class="kpis">{body}</div>{note}', wide=True)


def _rounded(value: Optional[float], scale: float = 1) -> object:
    return "—" if value is None else round(value * scale, 1)


def _services(dashboard: Dashboard, options: PageOptions) -> str:
    """The services and environments of the window, and (live) a selector that filters the page.

    Shown when the store holds more than one, or a filter is on."""
    known = dashboard.services
    if len(known) < 2 and options.service is None and options.environment is None:
        return ""
    listing = table(
        ("service", "environment", "pageviews"),
        [(row.service or "(none)", row.environment or "(none)", row.pageviews) for row in known],
    )
    if not options.live:
        return section("services", "Services", listing, wide=True)

    def choices(name: str, values: list[Optional[str]], chosen: Optional[str]) -> str:
        shown = [
            f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
            f"{escape(value)}</option>"
            for value in dict.fromkeys(value for value in values if value is not None)
        ]
        every = f'<option value=""{" selected" if chosen is None else ""}>every {name}</option>'
        return f'<select name="{name}">{every}{"".join(shown)}</select>'

    form = (
        '<form method="get" action="/" id="service-filter">'
        f'<input type="hidden" name="since" value="{escape(options.since_text)}">'
        + choices("service", [row.service for row in known], options.service)
        + choices("environment", [row.environment for row in known], options.environment)
        + '<button type="submit">Show</button></form>'
    )
    return section("services", "Services", form + listing, wide=True)


def _labels(dashboard: Dashboard) -> list[str]:
    labels, last_day = [], ""
    for start in dashboard.series.starts_us:
        when = datetime.fromtimestamp(start / 1e6, tz=timezone.utc)
        day = when.strftime("%m-%d")
        if dashboard.window.hourly and day == last_day:
            labels.append(when.strftime("%H:%M"))
        else:
            labels.append(when.strftime("%m-%d %H:%M") if dashboard.window.hourly else day)
        last_day = day
    return labels


def _traffic(dashboard: Dashboard) -> str:
    series, labels = dashboard.series, _labels(dashboard)
    per = dashboard.window.point_name
    x_unit = f"{per} starting (UTC)"
    charts = [
        svg.line_chart(
            title,
            [
                svg.Line(name, current, color),
                svg.Line("previous period", previous, "#94a3b8", dashed=True),
            ],
            labels,
            f"{unit} per {per}",
            x_unit,
        )
        for title, name, unit, current, previous, color in (
            (
                "Pageviews",
                "pageviews",
                "pageviews",
                series.pageviews,
                series.previous_pageviews,
                svg.COLORS[0],
            ),
            (
                "Unique visitors",
                "unique visitors",
                "visitors",
                series.visitors,
                series.previous_visitors,
                svg.COLORS[1],
            ),
        )
    ]
    note = (
        '<p class="note">Unique visitors are distinct cookieless visitor ids (they change daily); '
        "requests with Sec-GPC or DNT count as pageviews but not as visitors.</p>"
    )
    body = f'<div class="charts">{"".join(charts)}</div>{note}'
    return section("traffic", "Pageviews and unique visitors over time", body, wide=True)


def _devices(dashboard: Dashboard) -> str:
    rows = [(r.device_type, r.browser, r.os, r.pageviews, r.visitors) for r in dashboard.report.devices]
    return _count_table("devices", "Devices", ("device", "browser", "os", "pageviews", "visitors"), rows)


def _filtered(dashboard: Dashboard) -> str:
    rows = dashboard.report.filtered
    total = sum(row.requests for row in rows)
    body = (
        f'<p>Requests not counted as pageviews: <b data-filtered="{total}">{total}</b>.</p>'
        + table(("client", "requests"), [(row.client, row.requests) for row in rows])
        + '<p class="note">While <code>ignore_bots</code> is on (the default), requests of crawlers '
        "(bot), uptime and synthetic monitors (monitor) and other non-browser clients such as curl or "
        "HTTP libraries (script) make no pageview and are counted here; people's apps (in-app "
        "browsers, desktop apps, mobile apps' HTTP clients) are pageviews. Stored pageviews with such "
        f'an agent (<code>ignore_bots</code> off): <b data-bot-pageviews="{dashboard.bot_pageviews}">'
        f"{dashboard.bot_pageviews}</b>.</p>"
    )
    return section("filtered", "Filtered requests (bots, monitors, scripts)", body)


def _journey_button(options: PageOptions, kind: IdKind, value: str) -> str:
    """A button posting the stored id to ``/journey``: a link would put the id in the URL."""
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(text)}">'
        for name, text in (("since", options.since_text), ("kind", kind), ("stored", value))
    )
    return (
        f'<form class="journey" method="post" action="/journey">{hidden}'
        f'<button type="submit" class="link">{kind} {escape(short(value))}</button></form>'
    )


def _errors(dashboard: Dashboard, options: PageOptions) -> str:
    rows = dashboard.report.error_types
    if not rows:
        return section("errors", "Errors", '<p class="empty">No errors yet in this window.</p>', wide=True)
    people = {person.error_type: person for person in dashboard.error_people}
    table_rows: list[tuple[object, ...]] = []
    for row in rows:
        who = ""
        person = people.get(row.error_type)
        if options.live and person is not None:
            candidates: tuple[tuple[IdKind, Optional[str]], ...] = (
                ("user", person.user_id),
                ("session", person.session_id),
                ("visitor", person.visitor_id),
            )
            for kind, value in candidates:
                if value:
                    who = _journey_button(options, kind, value)
                    break
        table_rows.append(
            (
                row.error_type,
                row.count,
                row.last_seen,
                row.last_message,
                trace_link(options.jaeger_url, row.trace_id),
                who,
            )
        )
    headers = ("type", "count", "last seen", "last message", "latest trace", "who saw it last")
    return section("errors", "Errors", table(headers, table_rows, raw=(4, 5)), wide=True)


def _custom(dashboard: Dashboard) -> str:
    if not dashboard.custom:
        return section("custom", "Custom events", '<p class="empty">No custom events yet in this window.</p>')
    rows = [
        (row.name, row.count, ", ".join(f"{key.value} ({key.count})" for key in row.meta_keys) or "—")
        for row in dashboard.custom
    ]
    return section("custom", "Custom events", table(("event", "count", "meta keys (events)"), rows))


def _requests(dashboard: Dashboard) -> str:
    chart = svg.bar_chart(
        "Status codes", [(row.value, row.count) for row in dashboard.statuses], "requests (pageviews)"
    )
    if not dashboard.routes:
        listing = '<p class="empty">No requests yet in this window.</p>'
    else:
        listing = table(
            ("page", "requests", "4xx", "5xx", "p50 ms", "p95 ms"),
            [
                (r.page, r.requests, r.client_errors, r.server_errors, ms(r.p50_ms), ms(r.p95_ms))
                for r in dashboard.routes
            ],
        )
    note = (
        '<p class="note">Durations are the server spans\' (0.1 ms steps); percentiles are nearest-rank.</p>'
    )
    return section(
        "requests", "Status codes and request durations per route", chart + listing + note, wide=True
    )


def _journey(options: PageOptions, view: Optional[JourneyView]) -> str:
    explain = f'<p class="note" id="user-id-form">{escape(options.user_ids.explain())}</p>'
    if not options.live:
        body = (
            '<p class="note">Search a person\'s journey in the live dashboard: '
            "<code>otel-user-tracking dashboard DB</code>.</p>" + explain
        )
        return section("journey", "A user's journey", body, wide=True)
    selected = view.kind if view else "user"
    choices = "".join(
        f'<option value="{kind}"{" selected" if kind == selected else ""}>{kind} id</option>'
        for kind in ("user", "visitor", "session")
    )
    form = (
        '<form method="post" action="/journey">'
        f'<input type="hidden" name="since" value="{escape(options.since_text)}">'
        f'<select name="kind">{choices}</select>'
        '<input type="text" name="id" placeholder="user-42, a visitor id or a session id" required>'
        '<button type="submit">Show journey</button></form>'
    )
    return section("journey", "A user's journey", form + explain + _journey_result(options, view), wide=True)


def _journey_result(options: PageOptions, view: Optional[JourneyView]) -> str:
    if view is None:
        return ""
    if view.expired:
        return (
            '<p class="empty" id="journey-expired">This journey link is no longer known (the '
            "dashboard restarted since): search again.</p>"
        )
    searched = " or ".join(f"<code>{escape(value)}</code>" for value in view.values) or "nothing stored"
    if not view.steps:
        return (
            f'<p class="empty" id="journey-empty">No events for {view.kind} id {searched} in this window.</p>'
        )
    rows = []
    for step in view.steps:
        when = iso_time(step.ts_us, "milliseconds")
        if step.type == "error":
            what, detail = step.error_type or "?", step.error_message or ""
        elif step.type == "custom":
            what, detail = step.name or "?", step.meta_json or ""
        else:
            what = f"{step.method or ''} {step.page or ''}".strip()
            detail = (
                f"{step.status_code or ''} {ms(step.duration_ms)} ms" if step.duration_ms is not None else ""
            )
        rows.append((when, step.type, what, detail, trace_link(options.jaeger_url, step.trace_id)))
    listing = table(("time (UTC)", "type", "page or event", "detail", "trace"), rows, raw=(4,))
    return (
        f'<p id="journey-summary">{len(view.steps)} events of {view.kind} id {searched}, oldest first.</p>'
        + listing.replace('class="data"', 'class="data" id="journey-steps"', 1)
    )

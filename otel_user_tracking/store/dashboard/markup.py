"""HTML building blocks of the dashboard: escaped cells and tables, sections, trace links, styles.

Every value from the store enters the page through ``cell`` (escaped) or as markup that this
package built itself (``raw`` columns hold links made by ``trace_link``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#0f172a;background:#f1f5f9}
header{background:#0f172a;color:#f8fafc;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cbd5e1}main{padding:16px 24px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fill,minmax(360px,1fr))}section{background:#fff;border-radius:8px;
padding:12px 16px;box-shadow:0 1px 2px #0002}section.wide{grid-column:1/-1}h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px 3px 0;
border-bottom:1px solid #e2e8f0;vertical-align:top}td.num,th.num{text-align:right}
.kpis{display:flex;gap:24px;flex-wrap:wrap}.kpi b{display:block;font-size:26px}.kpi small{color:#64748b}
.empty{color:#64748b}.note{color:#475569;font-size:13px}svg.chart{max-width:100%;height:auto;font-size:11px}
svg text{fill:#334155}svg .unit{fill:#64748b;font-style:italic}form{display:flex;gap:8px;flex-wrap:wrap}
input[type=text]{min-width:320px}form.journey{display:inline}
button.link{background:none;border:0;padding:0;font:inherit;color:#1d4ed8;text-decoration:underline;cursor:pointer}
code{font-size:12px}.charts{display:flex;flex-wrap:wrap;gap:8px 24px}
"""


def section(key: str, title: str, body: str, wide: bool = False) -> str:
    css = ' class="wide"' if wide else ""
    return f'<section id="{key}" data-section="{key}"{css}><h2>{escape(title)}</h2>{body}</section>'


def cell(value: object, raw: bool = False) -> str:
    if _numeric(value):
        return f'<td class="num">{escape(str(value))}</td>'
    return f"<td>{value}</td>" if raw else f"<td>{escape(str(value))}</td>"


def _numeric(value: object) -> bool:
    """Numbers, and numbers shown as text (durations, "—"), are right-aligned."""
    if isinstance(value, str):
        return value == "—" or value.replace(".", "", 1).isdigit()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], raw: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in headers)
    body = "".join(
        "<tr>" + "".join(cell(value, index in raw) for index, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def trace_link(jaeger_url: str, trace_id: str) -> str:
    """A link to the trace in Jaeger's UI: ``<jaeger_url>/trace/<trace_id>``, opened in a new tab."""
    href = f"{jaeger_url.rstrip('/')}/trace/{quote(trace_id, safe='')}"
    return (
        f'<a class="trace" href="{escape(href)}" target="_blank" rel="noopener noreferrer">'
        f"{escape(trace_id[:16])}…</a>"
    )


def short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ms(value: object) -> str:
    """Milliseconds to 0.1; "—" for none (or a stored value that is not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.1f}"
    return "—"

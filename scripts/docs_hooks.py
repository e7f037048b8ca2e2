"""MkDocs hooks (``mkdocs.yml`` lists this file): the docs' generated parts.

``<!-- variables -->`` in a page becomes the table of every ``OTEL_PYTHON_USER_TRACKING_*``
variable, one section per group, from ``otel_user_tracking.variables.VARIABLES``.
"""

from __future__ import annotations

from typing import Any

from otel_user_tracking.variables import GROUPS, VARIABLES

MARKER = "<!-- variables -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def variables_table() -> str:
    """The configuration reference's variables, as Markdown: a heading and a table per group."""
    lines: list[str] = []
    for group in GROUPS:
        lines += [f"### {group}", "", "| variable | takes | default | option in code | what it does |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for item in VARIABLES:
            if item.group == group:
                cells = (f"`{item.name}`", item.type, item.default, item.option, item.meaning)
                lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, variables_table()) if MARKER in markdown else markdown

"""The report as one CSV document a spreadsheet loads as it is: ``report --format csv``.

One table in long form, the same five columns for every section, so any spreadsheet, pandas
or ``csvkit`` reads it whole and a filter on ``section`` (or a pivot on ``item`` by
``metric``) gives each section's table:

``section,rank,item,metric,value``: a figure of the whole window (``summary``, ``sessions``)
has an empty rank and item; a table row is numbered by its ``rank`` in its section (1 is
the top), ``item`` is its first column (the page, the referrer, the error type, ...) and
each other column is a row of its own (``pageviews``, ``visitors``, ...).

The values come from requests (pages, referrers, error messages), so a text cell that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) is prefixed with ``'``, as OWASP's CSV injection advice says, and terminal
controls are shown as escapes (``\\x1b``), as in the table. Text is quoted, numbers are bare.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from typing import Any

from .report import Report, terminal_text

HEADER = ("section", "rank", "item", "metric", "value")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_Row = tuple[str, Any, Any, str, Any]


def render_csv(report: Report) -> str:
    """The report as CSV (RFC 4180, ``\\r\\n`` line ends), header first."""
    out = io.StringIO()
    # Text quoted, numbers bare: a spreadsheet that splits at ";" (some locales) keeps each
    # text whole, and numbers stay numbers.
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(HEADER)
    for section, rank, item, metric, value in _rows(report):
        writer.writerow((section, rank, _cell(item), metric, _cell(value)))
    return out.getvalue()


def _rows(report: Report) -> Iterator[_Row]:
    """Every figure and table row of the report, sections in the report's field order."""
    for field in dataclasses.fields(report):
        value = getattr(report, field.name)
        if dataclasses.is_dataclass(value):  # a section of figures and tables (sessions)
            yield from _section(field.name, value)
        elif isinstance(value, tuple):
            yield from _table(field.name, value)
        else:
            yield ("summary", "", "", field.name, value)


def _section(name: str, section: Any) -> Iterator[_Row]:
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if isinstance(value, tuple):
            yield from _table(field.name, value)
        else:
            yield (name, "", "", field.name, value)


def _table(name: str, rows: tuple[Any, ...]) -> Iterator[_Row]:
    for rank, row in enumerate(rows, 1):
        first, *others = dataclasses.fields(row)
        item = getattr(row, first.name)
        for field in others:
            yield (name, rank, item, field.name, getattr(row, field.name))


def _cell(value: Any) -> Any:
    """A text cell made inert for spreadsheets and terminals; other values as they are."""
    if not isinstance(value, str):
        return "" if value is None else value
    text = terminal_text(value)
    return "'" + text if value.startswith(_FORMULA_STARTS) else text

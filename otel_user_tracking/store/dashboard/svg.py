"""Charts as inline SVG strings: no script, font or file from anywhere, so the page works offline.

Each chart has labelled axes with units, a legend when it has more than one series, and an
empty state that says there is no data yet. Every data point carries ``data-value`` and a
``<title>`` (a tooltip), so the numbers are readable by people and by tests alike. All text
passes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 580, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 52
MAX_X_LABELS = 8
COLORS = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c")


@dataclass(frozen=True)
class Line:
    """One series of a line chart: a name for the legend, its values and how it is drawn."""

    name: str
    values: Sequence[int]
    color: str = COLORS[0]
    dashed: bool = False


def axis_scale(maximum: float, most_ticks: int = 5) -> tuple[float, float]:
    """The axis top and tick step for values up to ``maximum``: whole-number ticks of 1, 2 or 5
    times a power of ten, at most ``most_ticks`` of them above zero."""
    step = 1.0
    while math.ceil(maximum / step) > most_ticks:
        for factor in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10
            step *= factor
            if math.ceil(maximum / step) <= most_ticks:
                break
    return max(math.ceil(maximum / step), 1) * step, step


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def empty_state(title: str, message: str) -> str:
    """A chart-sized box that says why there is nothing to draw."""
    return (
        f'<svg class="chart empty" role="img" viewBox="0 0 {WIDTH} 80" width="{WIDTH}" height="80" '
        f'aria-label="{escape(title)}: {escape(message)}">'
        f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="79" fill="#f8fafc" stroke="#cbd5e1" '
        'stroke-dasharray="4 3"/>'
        f'<text x="{WIDTH // 2}" y="45" text-anchor="middle" fill="#64748b">{escape(message)}</text></svg>'
    )


def _legend(names: Sequence[tuple[str, str, bool]], y: int) -> str:
    parts, x = [], LEFT
    for name, color, dashed in names:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<g class="legend-item"><line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{color}" '
            f'stroke-width="2.5"{dash}/><text x="{x + 28}" y="{y + 4}">{escape(name)}</text></g>'
        )
        x += 36 + 7 * len(name)
    return f'<g class="legend">{"".join(parts)}</g>'


def _y_axis(maximum: float, step: float, unit: str, plot_height: int) -> str:
    parts = []
    for tick in range(round(maximum / step) + 1):
        value = step * tick
        y = TOP + plot_height - plot_height * value / maximum
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}</text>'
        )
    mid = TOP + plot_height / 2
    parts.append(
        f'<text class="unit" x="14" y="{mid:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid:.1f})">{escape(unit)}</text>'
    )
    return "".join(parts)


def line_chart(title: str, lines: Sequence[Line], labels: Sequence[str], y_unit: str, x_unit: str) -> str:
    """A line chart of ``lines`` over the points named by ``labels`` (all series equally long).

    Args:
        title: What the chart shows (its accessible name).
        lines: The series; a legend is drawn when there is more than one.
        labels: The x-axis label of each point; at most eight are printed.
        y_unit: The y axis's unit, e.g. "pageviews per hour".
        x_unit: The x axis's unit, e.g. "hour starting (UTC)".
    """
    if not labels or not any(any(line.values) for line in lines):
        return empty_state(title, f"No data yet: {title.lower()} will appear here.")
    legend_height = 22 if len(lines) > 1 else 0
    plot_height = HEIGHT - TOP - BOTTOM - legend_height
    plot_width = WIDTH - LEFT - RIGHT
    maximum, step = axis_scale(max(max(line.values, default=0) for line in lines))
    count = len(labels)

    def x_of(index: int) -> float:
        return LEFT + (plot_width * (index + 0.5) / count)

    def y_of(value: float) -> float:
        return TOP + plot_height - plot_height * value / maximum

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        _y_axis(maximum, step, y_unit, plot_height),
    ]
    every = max(1, math.ceil(count / MAX_X_LABELS))
    base = TOP + plot_height
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#475569"/>')
    for index, label in enumerate(labels):
        if index % every == 0:
            parts.append(
                f'<text x="{x_of(index):.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append(
        f'<text class="unit" x="{LEFT + plot_width / 2:.1f}" y="{base + 34}" text-anchor="middle">'
        f"{escape(x_unit)}</text>"
    )
    for line in lines:
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(line.values))
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        parts.append(
            f'<g class="series" data-series="{escape(line.name)}" data-total="{sum(line.values)}">'
            f'<polyline fill="none" stroke="{line.color}" stroke-width="2.5"{dash} points="{points}"/>'
        )
        for index, value in enumerate(line.values):
            parts.append(
                f'<circle cx="{x_of(index):.1f}" cy="{y_of(value):.1f}" r="3" fill="{line.color}" '
                f'data-value="{value}"><title>{escape(labels[index])}: {value} {escape(line.name)}'
                "</title></circle>"
            )
        parts.append("</g>")
    if len(lines) > 1:
        parts.append(_legend([(line.name, line.color, line.dashed) for line in lines], HEIGHT - 10))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, int]], x_unit: str) -> str:
    """Horizontal bars, one per ``(label, value)``, longest first as given; one series, no legend."""
    if not bars or not any(value for _, value in bars):
        return empty_state(title, f"No data yet: {title.lower()} will appear here.")
    row, label_width = 24, 120
    height = TOP + row * len(bars) + 40
    plot_width = WIDTH - label_width - RIGHT - 40
    maximum, _ = axis_scale(max(value for _, value in bars))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for index, (label, value) in enumerate(bars):
        y = TOP + index * row
        width = plot_width * value / maximum
        parts.append(
            f'<g class="bar" data-label="{escape(label)}" data-value="{value}">'
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" fill="{COLORS[0]}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text x="{label_width + width + 6:.1f}" y="{y + 15}">{value}</text></g>'
        )
    base = TOP + row * len(bars) + 4
    parts.append(
        f'<line x1="{label_width}" y1="{base}" x2="{label_width + plot_width}" y2="{base}" stroke="#475569"/>'
        f'<text x="{label_width}" y="{base + 14}">0</text>'
        f'<text x="{label_width + plot_width}" y="{base + 14}" text-anchor="end">{_number(maximum)}</text>'
        f'<text class="unit" x="{label_width + plot_width / 2:.1f}" y="{base + 30}" text-anchor="middle">'
        f"{escape(x_unit)}</text></svg>"
    )
    return "".join(parts)

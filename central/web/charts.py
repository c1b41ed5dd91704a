"""Charts drawn on the station as SVG markup: no chart library, nothing to download.

``hourly_bars`` stacks one bar per hour by key (a class, class and direction, a counting
line). Colours are attributes, not styles, so the page's content security policy holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from html import escape

from roadside.central.store.browse import HourlySeries

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WIDTH, HEIGHT = 900, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 180, 12, 36


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    step = 10 ** (len(str(value)) - 1)
    for m in (1, 2, 5, 10):
        if value <= m * step:
            return m * step
    return value


def hourly_bars(series: HourlySeries, zone: tzinfo, label: Callable[[str], str], empty: str) -> str:
    """An SVG of stacked bars per hour, with a legend and hour ticks in ``zone``."""
    n = len(series.hours)
    totals = [sum(v[i] for v in series.values.values()) for i in range(n)]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(1, n)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart" role="img" aria-label="{escape(series.title)}">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#444"/>',
    ]
    for k in range(5):
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:g}</text>"
        )
    colours = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(series.values)}
    for i in range(n):
        x = LEFT + i * bar_w
        y = TOP + plot_h
        for key, values in series.values.items():
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            y -= h
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, bar_w - 2):.1f}" '
                f'height="{h:.1f}" fill="{colours[key]}"><title>'
                f"{escape(label(key))}: {values[i]}</title></rect>"
            )
        every = max(1, round(n / 12))
        if i % every == 0:
            hour = datetime.fromtimestamp(series.hours[i], zone).strftime("%H:%M")
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
                f'text-anchor="middle">{hour}</text>'
            )
    for j, key in enumerate(series.values):
        y = TOP + 14 + j * 18
        out.append(
            f'<rect x="{WIDTH - RIGHT + 14}" y="{y - 10}" width="12" height="12" '
            f'fill="{colours[key]}"/><text x="{WIDTH - RIGHT + 32}" y="{y}" font-size="12">'
            f"{escape(label(key))}</text>"
        )
    if not series.values:
        out.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
            f'font-size="14" fill="#666">{escape(empty)}</text>'
        )
    out.append("</svg>")
    return "".join(out)

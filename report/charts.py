"""Grouped bar charts as inline SVG, drawn by hand: no JavaScript, no fonts or files to fetch.

Values are exact Decimals; floats are used only for the geometry. Every bar carries its exact
value (`data-value`) and a tooltip, so a reader (or a test) can check it against the tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

# Colour-blind-safe (Okabe-Ito), in a fixed order so a series keeps its colour across charts.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000"]
_HEIGHT, _TOP, _BOTTOM, _LEFT, _RIGHT = 260, 16, 64, 72, 16
_BAR, _GAP = 18, 22


def _nice_step(span: float) -> float:
    raw = span / 5 if span > 0 else 1
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _ticks(low: float, high: float) -> list[float]:
    step = _nice_step(high - low)
    start, end = math.floor(low / step) * step, math.ceil(high / step) * step
    count = int(round((end - start) / step))
    return [start + i * step for i in range(count + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2f}"


def bar_chart(
    chart_id: str,
    categories: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], Decimal | int],
    unit: str,
    shown: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """An SVG grouped bar chart: one group per category, one bar per series present in it.

    `values[(category, series)]` is the bar's exact value; `shown` its text as the tables print
    it (default: the value itself). Negative values draw below the zero line.
    """
    numbers = [float(v) for v in values.values()] or [0.0]
    ticks = _ticks(min(0.0, *numbers), max(0.0, *numbers))
    low, high = ticks[0], ticks[-1]
    if high == low:
        high = low + 1
    longest = max((len(c) for c in categories), default=1)
    group_width = max(max(1, len(series)) * _BAR + _GAP, longest * 7 + 10)  # labels fit
    width = max(360, _LEFT + _RIGHT + len(categories) * group_width)
    plot_h = _HEIGHT - _TOP - _BOTTOM
    height = _HEIGHT + max(0, math.ceil(len(series) / 4) - 1) * 14

    def y(value: float) -> float:
        return _TOP + (high - value) / (high - low) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart-svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(chart_id)}" font-family="sans-serif" font-size="11">'
    ]
    for tick in ticks:
        ty = y(tick)
        out.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'stroke="{"#444" if tick == 0 else "#ddd"}"/>'
            f'<text x="{_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#444">'
            f"{escape(_tick_label(tick))}</text>"
        )
    out.append(
        f'<text x="14" y="{_TOP + plot_h / 2:.0f}" transform="rotate(-90 14 '
        f'{_TOP + plot_h / 2:.0f})" text-anchor="middle" fill="#444">{escape(unit)}</text>'
    )
    for index, category in enumerate(categories):
        bars_width = max(1, len(series)) * _BAR
        gx = _LEFT + index * group_width + (group_width - bars_width) / 2
        for slot, name in enumerate(series):
            if (category, name) not in values:
                continue
            value = values[(category, name)]
            top, bottom = sorted((y(float(value)), y(0.0)))
            text = (shown or {}).get((category, name), str(value))
            colour = PALETTE[slot % len(PALETTE)]
            out.append(
                f'<rect class="bar" x="{gx + slot * _BAR:.1f}" y="{top:.1f}" width="{_BAR - 2}" '
                f'height="{max(bottom - top, 1):.1f}" fill="{colour}" '
                f'data-category="{escape(category)}" data-series="{escape(name)}" '
                f'data-value="{escape(str(value))}"><title>{escape(category)} · '
                f"{escape(name)}: {escape(text)}</title></rect>"
            )
        label_x = gx + bars_width / 2
        out.append(
            f'<text x="{label_x:.1f}" y="{_HEIGHT - _BOTTOM + 16}" text-anchor="middle" '
            f'fill="#222">{escape(category)}</text>'
        )
    for slot, name in enumerate(series):  # legend, in rows under the axis labels
        lx = _LEFT + (slot % 4) * 150
        ly = _HEIGHT - _BOTTOM + 34 + (slot // 4) * 14
        out.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
            f'fill="{PALETTE[slot % len(PALETTE)]}"/>'
            f'<text x="{lx + 14}" y="{ly}" fill="#222">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)

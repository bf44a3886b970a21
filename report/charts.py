"""Grouped bar charts as inline SVG, drawn by hand: no JavaScript, no fonts or files to fetch.

Values are exact Decimals; floats are used only for the geometry. Every bar carries its exact
value (`data-value`) and a tooltip, so a reader (or a test) can check it against the tables.

A chart is at most MAX_WIDTH px wide, so that two columns of the page fit a 1280 px window
(issue 21): bars get narrower as groups are added, and a category label too long for its group
wraps onto more lines (never cut). The legend is HTML under the chart (`legend`), so that a
long series name wraps there instead of running into its neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

# Colour-blind-safe (Okabe-Ito), in a fixed order so a series keeps its colour across charts.
# A chart has at most len(PALETTE) series (report/tables.py folds the rest into "others", drawn
# in OTHERS_COLOUR, which is none of these): no colour repeats within a chart.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000"]
OTHERS_COLOUR = "#999999"
MAX_WIDTH = 1180  # the page's content is 1200 px wide at most
_HEIGHT, _TOP, _BOTTOM, _LEFT, _RIGHT = 236, 16, 6, 72, 16
_BAR, _GAP, _MIN_BAR = 18, 22, 3
_CHAR_PX, _LINE_PX = 7.5, 13  # a generous width of one 11 px character (capitals, digits)


def colours(series: Sequence[str]) -> dict[str, str]:
    """Each series' colour: the palette in order, "others" grey."""
    if len(series) > len(PALETTE) + (1 if "others" in series else 0):
        raise ValueError(f"{len(series)} series: fold them to {len(PALETTE)} first")
    named = [s for s in series if s != "others"]
    return {**{s: PALETTE[i] for i, s in enumerate(named)},
            **({"others": OTHERS_COLOUR} if "others" in series else {})}


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


def wrap_label(text: str, width_px: float) -> list[str]:
    """`text` in lines of at most `width_px`, broken after `_`, `-`, `/` or a space where it
    can be, else anywhere; every character is kept, in order."""
    per_line = max(4, int(width_px // _CHAR_PX))
    lines: list[str] = []
    rest = text
    while len(rest) > per_line:
        cut = max((rest.rfind(mark, 0, per_line) for mark in "_-/ "), default=-1)
        cut = cut + 1 if cut > 0 else per_line
        lines.append(rest[:cut])
        rest = rest[cut:]
    return [*lines, rest] if rest or not lines else lines


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
    slots = max(1, len(series))
    count = max(1, len(categories))
    natural = max(slots * _BAR + _GAP, max((len(c) for c in categories), default=1) * _CHAR_PX)
    group_width = min(natural, (MAX_WIDTH - _LEFT - _RIGHT) / count)
    bar = max(_MIN_BAR, min(_BAR, (group_width - 8) / slots))
    width = math.ceil(max(360, _LEFT + _RIGHT + count * group_width))
    labels = {c: wrap_label(c, group_width - 4) for c in categories}
    label_lines = max((len(lines) for lines in labels.values()), default=1)
    plot_h = _HEIGHT - _TOP - _BOTTOM - 16
    height = _HEIGHT + (label_lines - 1) * _LINE_PX
    colour = colours(series)

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
        bars_width = slots * bar
        gx = _LEFT + index * group_width + (group_width - bars_width) / 2
        for slot, name in enumerate(series):
            if (category, name) not in values:
                continue
            value = values[(category, name)]
            top, bottom = sorted((y(float(value)), y(0.0)))
            text = (shown or {}).get((category, name), str(value))
            out.append(
                f'<rect class="bar" x="{gx + slot * bar:.1f}" y="{top:.1f}" '
                f'width="{max(bar - 2, 1):.1f}" height="{max(bottom - top, 1):.1f}" '
                f'fill="{colour[name]}" data-category="{escape(category)}" '
                f'data-series="{escape(name)}" data-value="{escape(str(value))}">'
                f"<title>{escape(category)} · {escape(name)}: {escape(text)}</title></rect>"
            )
        label_x = gx + bars_width / 2
        spans = "".join(
            f'<tspan x="{label_x:.1f}" dy="{0 if i == 0 else _LINE_PX}">{escape(line)}</tspan>'
            for i, line in enumerate(labels[category])
        )
        out.append(
            f'<text class="category" data-name="{escape(category)}" x="{label_x:.1f}" '
            f'y="{_TOP + plot_h + 16}" text-anchor="middle" fill="#222">{spans}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def legend(chart_id: str, series: Sequence[str]) -> str:
    """The chart's legend as HTML: a swatch and the whole name per series; names wrap."""
    colour = colours(series)
    items = "".join(
        f'<li><span class="swatch" style="background:{colour[name]}"></span>'
        f'<span class="legend-label" data-name="{escape(name)}">{escape(name)}</span></li>'
        for name in series
    )
    return f'<ul class="legend" data-chart="{escape(chart_id)}">{items}</ul>'

"""The report as one self-contained HTML page (pure: frames in, text out; nothing fetched)."""

from __future__ import annotations

from html import escape

from report.charts import bar_chart, legend
from report.data import ReportData
from report.tables import Chart, Table, charts, summary_tables

SECTIONS = [
    ("headline-billed", "Billed this period against the last"),
    ("headline-facts", "Adjusted, rejected and waiting"),
    ("run-facts", "The run"),
    ("stages", "The run's stages: time and rows"),
    ("invoices", "Invoices by period, status and currency"),
    ("revenue", "Revenue by add-on and line type"),
    ("discounts", "Discount given by plan"),
    ("rejected", "Rejected rows by file and reason"),
    ("recent-runs", "Recent runs"),
]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc}
.meta{color:#555;font-size:13px} figure{margin:8px 0 12px;max-width:100%}
.headline{font-size:16px;margin:14px 0 0} .headline b{font-size:18px}
.charts{display:flex;flex-wrap:wrap;gap:8px 32px;align-items:flex-start}
figcaption{font-weight:600;font-size:13px;margin-bottom:4px} .note{font-weight:400;color:#555}
ul.legend{list-style:none;margin:2px 0 0 72px;padding:0;display:flex;flex-wrap:wrap;
 gap:2px 16px;font-size:11px;max-width:1100px}
ul.legend li{display:flex;align-items:center;gap:4px;overflow-wrap:anywhere}
.swatch{display:inline-block;width:10px;height:10px;flex:none}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
caption{text-align:left;color:#555;font-size:12px;padding:2px 0;width:max-content;max-width:1100px}
th,td{border:1px solid #ddd;padding:3px 8px;overflow-wrap:anywhere}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} .empty{color:#777;font-style:italic}
tr.others td{font-style:italic;background:#fafafa}
"""

# Runs after layout: marks each chart with the bars the browser actually laid out, so a
# headless browser's DOM dump shows that every chart rendered. The page needs no script.
_CHECK = """
<script>
(function () {
  var ok = 0, figures = document.querySelectorAll('figure.chart');
  figures.forEach(function (f) {
    var svg = f.querySelector('svg'), laid = 0;
    if (svg) svg.querySelectorAll('rect.bar').forEach(function (r) {
      var b = r.getBBox(); if (b.width > 0 && b.height > 0) laid++; });
    var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    f.setAttribute('data-rendered-bars', laid);
    if (laid > 0 && box.width > 0 && box.height > 0) ok++;
  });
  document.body.setAttribute('data-charts-rendered', ok);
})();
</script>
"""

_NUMERIC = {"invoices", "total", "amount", "lines", "discount_given", "rows", "seconds",
            "rows_in", "rows_out", "last", "this", "difference"}


def _table_html(table: Table) -> str:
    if not table.rows:
        return f'<p class="empty" id="t-{escape(table.table_id)}">nothing to show</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in table.headers or table.columns)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    body = "".join(
        ('<tr class="others">' if row[0].startswith("others (") else "<tr>") + "".join(
            f'<td data-col="{escape(c)}"{" class=num" if c in _NUMERIC else ""}>{escape(v)}</td>'
            for c, v in zip(table.columns, row, strict=True)
        ) + "</tr>"
        for row in table.rows
    )
    return (f'<table class="data" id="t-{escape(table.table_id)}">{caption}'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _chart_html(chart: Chart) -> str:
    svg = bar_chart(chart.chart_id, chart.categories, chart.series, chart.values, chart.unit,
                    chart.shown)
    note = f' <span class="note">({escape(chart.note)})</span>' if chart.note else ""
    return (f'<figure class="chart" data-chart="{escape(chart.chart_id)}">'
            f"<figcaption>{escape(chart.title)}{note}</figcaption>{svg}"
            f"{legend(chart.chart_id, chart.series)}</figure>")


def headline_text(data: ReportData) -> str:
    """`Period 2026-02 (draft) as of 2026-02-01; compared with 2026-01 (final)`."""
    head = data.headline
    if head is None:
        return "No period invoiced yet"

    def status(period: str) -> str:
        found = head.billed.filter(head.billed["period"] == period)["status"].to_list()
        statuses = sorted({s for text in found for s in text.split(", ")})
        return ", ".join(statuses) or "nothing billed"

    as_of = f" as of {head.as_of.isoformat()}" if head.as_of else ""
    return (f"Period {head.period} ({status(head.period)}){as_of}; compared with "
            f"{head.last_period} ({status(head.last_period)})")


def _bold_periods(text: str, data: ReportData) -> str:
    """The headline with the report's period and as-of date in bold."""
    out = escape(text)
    if data.headline is not None:
        out = out.replace(f"Period {data.headline.period}",
                          f"Period <b>{data.headline.period}</b>", 1)
        if data.headline.as_of:
            day = data.headline.as_of.isoformat()
            out = out.replace(f"as of {day}", f"as of <b>{day}</b>", 1)
    return out


def render_html(data: ReportData, generated_at: str, title: str = "billrun run report") -> str:
    """The whole page: a header, then per section its charts and its table."""
    tables = {t.table_id: t for t in summary_tables(data)}
    by_section: dict[str, list[Chart]] = {}
    for section, chart in charts(data):
        by_section.setdefault(section, []).append(chart)
    span = f"{data.periods[0]} to {data.periods[-1]}" if data.periods else "no period billed"
    head = data.headline
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}{f' {head.period}' if head else ''}</title>"
        f"<style>{_STYLE}</style></head>",
        f'<body data-charts="{sum(len(c) for c in by_section.values())}">',
        f"<h1>{escape(title)}</h1>",
        f'<p class="headline" id="headline"'
        f'{f" data-period={head.period!r}" if head else ""}'
        f'{f" data-as-of={head.as_of.isoformat()!r}" if head and head.as_of else ""}>'
        f"{_bold_periods(headline_text(data), data)}</p>",
        f'<p class="meta">Charts and tables cover the periods {escape(span)} · read from '
        f"{escape(data.source)} · written {escape(generated_at)}</p>",
    ]
    for section, heading in SECTIONS:
        if section not in tables:
            continue
        parts.append(f'<section id="{section}"><h2>{escape(heading)}</h2>')
        if by_section.get(section):
            parts.append('<div class="charts">')
            parts += [_chart_html(c) for c in by_section[section]]
            parts.append("</div>")
        parts.append(_table_html(tables[section]))
        parts.append("</section>")
    parts += [_CHECK, "</body></html>"]
    return "\n".join(parts)

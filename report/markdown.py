"""The report's summary tables as markdown, for the run's Prefect artifact (pure)."""

from __future__ import annotations

from pathlib import Path

from report.data import ReportData
from report.render import headline_text
from report.tables import summary_tables


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: ReportData, report: Path | None) -> str:
    """A link to the HTML report, then the same tables it shows."""
    lines = []
    if report is not None:
        uri = Path(report).resolve().as_uri()
        lines += [f"**Run report** (charts, offline HTML): [{report.name}]({uri})", "",
                  f"`{Path(report).resolve()}`", ""]
    lines += [f"**{headline_text(data)}**", ""]
    for table in summary_tables(data):
        lines += [f"### {table.title}", ""]
        if table.caption:
            lines += [f"_{table.caption}_", ""]
        if not table.rows:
            lines += ["nothing to show", ""]
            continue
        lines.append("| " + " | ".join(table.headers or table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
        lines.append("")
    return "\n".join(lines)

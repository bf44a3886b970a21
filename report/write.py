"""Write the run report beside the analyst copy, atomically (readers never see half a page)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from report.gather import ReportData, ReportError, gather
from report.render import render_html

__all__ = ["ReportError", "report_path", "write_report", "write_html"]


def report_path(db: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.report.html`, beside it (and the analyst copy)."""
    path = Path(db)
    return path.with_name(f"{path.stem}.report.html")


def write_html(data: ReportData, out: str | Path) -> Path:
    """Render `data` to `out` through a temporary file and `os.replace`."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        staging.write_text(render_html(data, written), encoding="utf-8")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def write_report(
    db: str | Path,
    out: str | Path | None = None,
    period: str | None = None,
    facts: list[tuple[str, str]] | None = None,
) -> Path:
    """Gather the report's data from `db`'s store and write the page; returns its path."""
    data = gather(db, period)
    data.facts = list(facts or [])
    return write_html(data, out or report_path(db))

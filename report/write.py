"""Write the run report beside the analyst copy, atomically (readers never see half a page)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from report.gather import ReportData, ReportError, gather
from report.render import render_html

__all__ = ["ReportError", "on_demand_path", "write_report", "write_html"]


def on_demand_path(db: str | Path, period: str) -> Path:
    """`billrun.duckdb`, `2026-02` -> `billrun.report-2026-02.html`: what `billrun report`
    writes by default, beside the run's own `billrun.report.html` (flows/run_report.py) and
    never over it (docs/REPORT.md)."""
    path = Path(db)
    return path.with_name(f"{path.stem}.report-{period}.html")


def write_html(data: ReportData, out: str | Path, title: str = "billrun run report") -> Path:
    """Render `data` to `out` through a temporary file and `os.replace`. The folder must exist:
    a mistyped path makes no folder."""
    target = Path(out)
    if not target.parent.is_dir():
        raise ReportError(f"{target}: no folder {target.parent}")
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        staging.write_text(render_html(data, written, title), encoding="utf-8")
        os.replace(staging, target)
    except OSError as exc:
        raise ReportError(f"{target}: cannot write: {exc.strerror or exc}") from exc
    finally:
        staging.unlink(missing_ok=True)
    return target


def write_report(
    db: str | Path,
    out: str | Path | None = None,
    period: str | None = None,
) -> Path:
    """`billrun report`: gather the report's data from `db`'s store and write the page to
    `out`, by default `on_demand_path` (the run's own report, with its "The run" section, is
    kept). Returns its path."""
    data = gather(db, period)
    if not data.periods:
        raise ReportError(f"{data.source}: no invoice yet (run `billrun nightly` first)")
    return write_html(data, out or on_demand_path(db, data.periods[-1]), "billrun report")

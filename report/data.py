"""What the report shows, as plain frames: the boundary between gathering and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


class ReportError(RuntimeError):
    """There is nothing to report on (no database, or nothing billed yet)."""


@dataclass
class ReportData:
    """Everything the report shows, as frames; amounts are exact DECIMALs."""

    source: str  # the file read
    periods: list[str]  # the window, oldest first; the last is the report's period
    minor_units: dict[str, int]
    invoices: pl.DataFrame
    revenue: pl.DataFrame
    discounts: pl.DataFrame
    rejected: pl.DataFrame
    stages: pl.DataFrame
    recent_runs: pl.DataFrame
    facts: list[tuple[str, str]] = field(default_factory=list)  # what the run itself reported

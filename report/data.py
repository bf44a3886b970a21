"""What the report shows, as plain frames: the boundary between gathering and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


class ReportError(RuntimeError):
    """There is nothing to report on (no database, nothing billed yet, no such period, or
    nowhere to write): a bad argument, exit 2, unless `exit_code` says the run failed."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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

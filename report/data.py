"""What the report shows, as plain frames: the boundary between gathering and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl


class ReportError(RuntimeError):
    """There is nothing to report on (no database, nothing billed yet, no such period, or
    nowhere to write): a bad argument, exit 2, unless `exit_code` says the run failed."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Headline:
    """The billing manager's first questions, answered at the top of the page (docs/REPORT.md).

    `billed` holds the invoices of `period` and `last_period` (the calendar month before it):
    one row per period and currency, with the statuses found. `adjustments` holds the lines
    written to final periods of the window, per period and currency. `late_usage` is `period ->
    events` waiting for a reprocess (store/late_usage.py)."""

    period: str
    last_period: str
    as_of: date | None  # the as-of date of the latest successful nightly
    billed: pl.DataFrame  # period, currency, status, invoices, total
    adjustments: pl.DataFrame  # period, currency, lines, net
    rejected_rows: int
    late_usage: dict[str, int]


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
    headline: Headline | None = None  # None when no period is invoiced yet

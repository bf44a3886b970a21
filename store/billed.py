"""Which periods have been billed: `reprocess` refuses any other (issue 12, item 7)."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from store.duck import scalar
from store.results import last_nightly_as_of


class PeriodNotBilledError(ValueError):
    """`reprocess --period P` for a period that no nightly run has billed (exit 2)."""


@dataclass(frozen=True)
class BilledRange:
    """The billed periods: from the earliest one stored to the month of the last nightly."""

    first: str | None
    last: str | None

    def holds(self, period: str) -> bool:
        """Whether `period` (YYYY-MM; text order is date order) lies in the range."""
        return self.first is not None and self.last is not None and (
            self.first <= period <= self.last
        )

    def describe(self) -> str:
        """`2026-01 to 2026-03`, or that nothing was billed yet."""
        if self.first is None or self.last is None:
            return "no period has been billed yet (run `billrun nightly` first)"
        return f"the billed periods are {self.first} to {self.last}"


def billed_range(con: duckdb.DuckDBPyConnection) -> BilledRange:
    """The range of periods that nightly runs have computed (drafts or finals)."""
    as_of = last_nightly_as_of(con)
    first = scalar(
        con,
        """SELECT min(period) FROM (
               SELECT period FROM invoices UNION ALL SELECT period FROM finalized_periods
               UNION ALL SELECT period FROM decisions)""",
    )
    if as_of is None or first is None:
        return BilledRange(None, None)
    # A nightly as of D computes every period up to the one holding D; the calendar month of D
    # is the latest label that any billing day can give it.
    return BilledRange(first, f"{as_of:%Y-%m}")


def require_billed(con: duckdb.DuckDBPyConnection, period: str) -> None:
    """Raise PeriodNotBilledError, naming the billed periods, unless `period` was billed."""
    billed = billed_range(con)
    if not billed.holds(period):
        raise PeriodNotBilledError(
            f"period {period} was never billed, so there is nothing to reprocess: "
            f"{billed.describe()}"
        )

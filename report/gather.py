"""The report's data: small frames read with SQL from the analyst copy (or the database)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.periods import shift_period
from report.data import Headline, ReportData, ReportError
from store.duck import frame
from store.late_usage import late_usage_by_period
from store.snapshot import analyst_path

__all__ = ["ReportData", "ReportError", "WINDOW", "gather", "source_for"]

WINDOW = 6  # periods shown in the revenue and discount charts: the last six up to P

# Adjustments to finalized periods are shown as their own line type, so corrections stand out.
_REVENUE_SQL = """
    SELECT period, coalesce(addon_id, '(main product / none)') AS addon_id, line_type, currency,
           sum(amount) AS amount, count(*) AS lines
    FROM (SELECT period, addon_id, line_type, currency, amount FROM charges
          UNION ALL
          SELECT period, addon_id, 'adjustment', currency, amount FROM adjustments)
    WHERE period IN (SELECT unnest($periods))
    GROUP BY ALL ORDER BY period, addon_id, line_type, currency"""

_INVOICES_SQL = """
    SELECT period, status, currency, count(*) AS invoices, sum(total) AS total
    FROM invoices WHERE period IN (SELECT unnest($periods))
    GROUP BY ALL ORDER BY period, status, currency"""

_DISCOUNTS_SQL = """
    SELECT period, coalesce(discount_plan_id, '(none)') AS discount_plan_id, currency,
           sum(discount_given) AS discount_given, sum(lines)::BIGINT AS lines
    FROM discount_by_plan WHERE period IN (SELECT unnest($periods))
    GROUP BY ALL ORDER BY period, discount_plan_id, currency"""

_REJECTED_SQL = """
    SELECT source, split_part(reason, ':', 1) AS reason, count(*) AS rows,
           any_value(reason ORDER BY line) AS example
    FROM rejected_rows GROUP BY ALL ORDER BY source, rows DESC, reason"""

# The latest billing run and the loads it ran (those that started inside it) are its stages.
_STAGES_SQL = """
    WITH billing AS (
        SELECT * FROM runs WHERE kind IN ('nightly', 'reprocess')
        ORDER BY started_at DESC LIMIT 1)
    SELECT r.run_id, r.kind, r.period, r.as_of, r.started_at, r.status,
           round(epoch(r.finished_at - r.started_at), 3)::DECIMAL(18,3) AS seconds,
           r.rows_in, r.rows_out, r.message
    FROM runs r, billing b
    WHERE r.run_id = b.run_id
       OR (r.kind = 'load' AND r.started_at BETWEEN b.started_at AND b.finished_at)
    ORDER BY r.started_at"""

_RECENT_SQL = """
    SELECT run_id, kind, period, as_of, started_at, status,
           round(epoch(finished_at - started_at), 3)::DECIMAL(18,3) AS seconds,
           rows_in, rows_out
    FROM runs ORDER BY started_at DESC LIMIT 10"""


# The headline (docs/REPORT.md, "The headline"): the invoices of the report's period and of the
# calendar month before it, per currency, with the statuses they are in.
_BILLED_SQL = """
    SELECT period, currency, string_agg(DISTINCT status, ', ' ORDER BY status) AS status,
           count(*) AS invoices, sum(total) AS total
    FROM invoices WHERE period IN ($this, $last)
    GROUP BY period, currency ORDER BY currency, period"""

# Adjustment lines written to the final periods of the window, by the period they correct.
_ADJUSTED_SQL = """
    SELECT period, currency, count(*) AS lines, sum(amount) AS net
    FROM adjustments WHERE period IN (SELECT unnest($periods))
    GROUP BY ALL ORDER BY period, currency"""

# The books are as of the latest successful nightly (a reprocess has no as-of date: it
# recomputes a final period whole).
_AS_OF_SQL = """
    SELECT as_of FROM runs WHERE kind = 'nightly' AND status = 'success' AND as_of IS NOT NULL
    ORDER BY started_at DESC LIMIT 1"""


def _headline(con: duckdb.DuckDBPyConnection, periods: list[str]) -> Headline | None:
    if not periods:
        return None
    this, last = periods[-1], shift_period(periods[-1], -1)
    as_of = con.execute(_AS_OF_SQL).fetchall()
    return Headline(
        period=this,
        last_period=last,
        as_of=as_of[0][0] if as_of else None,
        billed=frame(con, _BILLED_SQL, {"this": this, "last": last}),
        adjustments=frame(con, _ADJUSTED_SQL, {"periods": periods}),
        rejected_rows=con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0],
        late_usage=late_usage_by_period(con),
    )


def source_for(db: str | Path) -> Path:
    """The analyst copy when there is one (never blocked by a running writer), else the db."""
    copy = analyst_path(db)
    if copy.is_file():
        return copy
    if Path(db).is_file():
        return Path(db)
    raise ReportError(f"{db}: no such database (run `billrun load` and `billrun nightly` first)")


def _window(con: duckdb.DuckDBPyConnection, period: str | None) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT period FROM invoices WHERE $p IS NULL OR period <= $p "
        "ORDER BY period DESC LIMIT $n",
        {"p": period, "n": WINDOW},
    ).fetchall()
    return sorted(r[0] for r in rows)


def gather(db: str | Path, period: str | None = None) -> ReportData:
    """Read the report's frames; `period` is the latest period shown (default: the latest)."""
    path = source_for(db)
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise ReportError(f"{path}: cannot open: {exc}", exit_code=1) from exc
    try:
        tables = {r[0] for r in con.execute(  # views too: the analyst file holds only views
            "SELECT table_name FROM information_schema.tables").fetchall()}
        if "catalog_currencies" not in tables:
            raise ReportError(f"{path}: nothing billed yet (run `billrun nightly` first)")
        periods = _window(con, period)
        if period is not None and period not in periods:
            raise ReportError(f"{path}: no invoice for period {period}")
        window = {"periods": periods}
        return ReportData(
            source=str(path.resolve()),
            periods=periods,
            minor_units=dict(
                con.execute("SELECT currency, minor_units FROM catalog_currencies").fetchall()
            ),
            invoices=frame(con, _INVOICES_SQL, window),
            revenue=frame(con, _REVENUE_SQL, window),
            discounts=frame(con, _DISCOUNTS_SQL, window),
            rejected=frame(con, _REJECTED_SQL),
            stages=frame(con, _STAGES_SQL),
            recent_runs=frame(con, _RECENT_SQL),
            headline=_headline(con, periods),
        )
    except duckdb.Error as exc:  # e.g. a copy written by an older billrun: one line, no trace
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path}: cannot read the report's data: {first}", exit_code=1) from exc
    finally:
        con.close()

"""Late usage (issue 21): events dated in a period that is already final for their account and
loaded after that period was last computed. A final invoice is never rewritten:
`billrun reprocess --period P` bills them with adjustment lines (SPEC §5), and so does a nightly
with the setting `late_usage = "adjust"`, which reprocesses those periods in its own run. The
`late_usage` view lists them until a run that reprocessed their period covers them; every load
and nightly summary counts them by period (docs/RUNS.md, "Late usage")."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from pipeline.money import format_amount

# One row per late event. An account's period is `YYYY-MM` of the month its billing day starts
# it in (pipeline.periods.period_of_expr; the billing day of the account's earliest row). A
# final account-period was last computed by the run that finalized it (finalized_periods'
# run_id, the final invoice's run_id) or by a later successful run that reprocessed its period:
# a reprocess (`runs.period` is its period) or a nightly that adjusted late usage (`runs.period`
# lists the periods it reprocessed, comma-separated; REPROCESSED_SEPARATOR). An event loaded
# after that run finished is in none of its lines.
LATE_USAGE_SQL = """
    WITH days AS (
        SELECT account_id, arg_min(billing_day, effective_from) AS billing_day
        FROM accounts GROUP BY account_id),
    events AS (
        SELECT u.*, strftime(
                   CASE WHEN day(u.started_at) >= d.billing_day
                        THEN date_trunc('month', u.started_at)
                        ELSE date_trunc('month', u.started_at) - INTERVAL 1 MONTH END,
                   '%Y-%m') AS period
        FROM usage u JOIN days d USING (account_id)
        -- only events loaded after the first finalizing run ended can be late: a cheap filter
        -- that leaves out the history loaded before any period was final
        WHERE u.loaded_at > (SELECT min(r.finished_at) FROM runs r WHERE r.run_id IN (
            SELECT run_id FROM finalized_periods
            UNION SELECT run_id FROM invoices WHERE status = 'final'))),
    final AS (
        SELECT account_id, period, run_id FROM finalized_periods
        UNION SELECT account_id, period, run_id FROM invoices WHERE status = 'final'),
    reprocessed AS (
        SELECT period, max(finished_at) AS finished_at FROM (
            SELECT unnest(string_split(period, ',')) AS period, finished_at FROM runs
            WHERE kind IN ('reprocess', 'nightly') AND status = 'success'
              AND period IS NOT NULL)
        GROUP BY period),
    computed AS (
        SELECT f.account_id, f.period,
               greatest(max(fr.finished_at), max(rr.finished_at)) AS computed_at
        FROM final f
        LEFT JOIN runs fr ON fr.run_id = f.run_id
        LEFT JOIN reprocessed rr ON rr.period = f.period
        GROUP BY f.account_id, f.period)
    SELECT e.period, e.account_id, e.event_id, e.service, e.destination_group, e.started_at,
           e.quantity, e.amount, e.source, e.line, e.run_id AS loaded_by, e.loaded_at,
           'billrun reprocess --period ' || e.period AS bill_with
    FROM events e JOIN computed c USING (account_id, period)
    WHERE e.loaded_at > c.computed_at
    ORDER BY e.period, e.account_id, e.started_at, e.event_id"""


# How a nightly's `runs.period` lists the periods whose late usage it reprocessed.
REPROCESSED_SEPARATOR = ","


def reprocessed_periods(periods: list[str]) -> str | None:
    """The `runs.period` of a run that reprocessed `periods` (None: it reprocessed none)."""
    return REPROCESSED_SEPARATOR.join(sorted(periods)) or None


def late_usage_by_period(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """`period -> events` of the late usage waiting for a reprocess, oldest period first."""
    return dict(con.execute(
        f"SELECT period, count(*) FROM ({LATE_USAGE_SQL}) GROUP BY period ORDER BY period"
    ).fetchall())


def late_usage_lines(late: dict[str, int]) -> list[tuple[str, str]]:
    """`(label, text)` rows for a summary: one per period, with the command that bills it."""
    return [
        (f"late usage {period}", f"{events:,} event(s) in a final period, not billed yet: "
                                 f"billrun reprocess --period {period}")
        for period, events in late.items()
    ]


@dataclass(frozen=True)
class LateAdjusted:
    """What a nightly with `late_usage = "adjust"` did for one period: the late events it
    found there, the adjustment lines it wrote, and their net per currency (minor units)."""

    period: str
    events: int
    lines: int
    net_minor: dict[str, int]


def late_adjusted(
    events: dict[str, int], adjustments: pl.DataFrame
) -> list[LateAdjusted]:
    """Per reprocessed period (oldest first), from the late events it had before the run and
    the run's adjustment lines (`period, currency, amount_minor`, in minor units)."""
    by_period: dict[str, tuple[int, dict[str, int]]] = {}
    if adjustments.height:
        for period, currency, lines, net in adjustments.group_by("period", "currency").agg(
            pl.len(), pl.col("amount_minor").sum()
        ).sort("period", "currency").iter_rows():
            count, nets = by_period.get(period, (0, {}))
            by_period[period] = (count + lines, {**nets, currency: int(net)})
    return [LateAdjusted(p, n, *by_period.get(p, (0, {}))) for p, n in sorted(events.items())]


def signed_amount(minor: int, minor_units: int, currency: str | None = None) -> str:
    """`+3.00 USD`, `-1.20 EUR`, `0.00 USD`: a net adjustment as people read it."""
    text = format_amount(minor, minor_units, currency, in_minor=True)
    return f"+{text}" if minor > 0 else text


def late_adjusted_lines(
    adjusted: list[LateAdjusted], minor_units: dict[str, int]
) -> list[tuple[str, str]]:
    """`(label, text)` rows for a summary: per period, the late events billed, with how many
    adjustment lines and their net (no line: the events changed no amount or quantity)."""
    rows = []
    for done in adjusted:
        nets = ", ".join(signed_amount(net, minor_units.get(currency, 2), currency)
                         for currency, net in sorted(done.net_minor.items()))
        rows.append((f"late usage {done.period} billed",
                     f"{done.events:,} late event(s) billed on {done.lines:,} adjustment "
                     f"line(s), net {nets or 'nothing'}"))
    return rows

"""Late usage (issue 21): events dated in a period that is already final for their account and
loaded after that period was last computed. No nightly bills them (a final invoice is never
rewritten); `billrun reprocess --period P` does, with adjustment lines (SPEC §5). The
`late_usage` view lists them until a reprocess of their period covers them; every load and
nightly summary counts them by period (docs/RUNS.md, "Late usage")."""

from __future__ import annotations

import duckdb

# One row per late event. An account's period is `YYYY-MM` of the month its billing day starts
# it in (pipeline.periods.period_of_expr; the billing day of the account's earliest row). A
# final account-period was last computed by the run that finalized it (finalized_periods'
# run_id, the final invoice's run_id) or by a later successful reprocess of its period; an
# event loaded after that run finished is in none of its lines.
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
    computed AS (
        SELECT f.account_id, f.period,
               greatest(max(fr.finished_at), max(rr.finished_at)) AS computed_at
        FROM final f
        LEFT JOIN runs fr ON fr.run_id = f.run_id
        LEFT JOIN runs rr ON rr.kind = 'reprocess' AND rr.period = f.period
                         AND rr.status = 'success'
        GROUP BY f.account_id, f.period)
    SELECT e.period, e.account_id, e.event_id, e.service, e.destination_group, e.started_at,
           e.quantity, e.amount, e.source, e.line, e.run_id AS loaded_by, e.loaded_at,
           'billrun reprocess --period ' || e.period AS bill_with
    FROM events e JOIN computed c USING (account_id, period)
    WHERE e.loaded_at > c.computed_at
    ORDER BY e.period, e.account_id, e.started_at, e.event_id"""


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

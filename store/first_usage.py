"""Each account's first usage day, kept so that a night does not read every event ever loaded.

The plan of a run starts each account at its first activity: its earliest assignment start or
usage event (store/results.py `read_first_activity`). The usage part was a GROUP BY over the
whole `usage` table every night: it grew with the history. An event is immutable once loaded
(store/raw.py), so each account's first day only moves earlier when new events come in. The
commit of every billing run folds the events loaded since the last fold into
`run_state.first_usage` (one row per account) and moves the mark `run_state.first_usage_mark`
(the latest `loaded_at` folded). A read takes the stored days and the events loaded after the
mark: those are found by `loaded_at`'s row-group statistics (the events are appended load by
load), so a night reads the day's events, not the history. A database without the state (made
before it, or opened read-only before its first run) is read whole, as before.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from store.duck import scalar
from store.results_schema import STATE_SCHEMA

FIRST_USAGE = f"{STATE_SCHEMA}.first_usage"
MARK = f"{STATE_SCHEMA}.first_usage_mark"


def _has_state(con: duckdb.DuckDBPyConnection) -> bool:
    return scalar(
        con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name IN "
        "('first_usage', 'first_usage_mark') AND database_name = current_database()",
        [STATE_SCHEMA]) == 2


def _mark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    return scalar(con, f"SELECT max(loaded_at) FROM {MARK}")


def _fresh_sql(mark: datetime | None) -> tuple[str, list]:
    """SQL and parameters: the first day of each account among the events loaded after `mark`
    (every event when None). The mark is a parameter, a constant: DuckDB skips row groups."""
    where, params = ("WHERE loaded_at > ?", [mark]) if mark is not None else ("", [])
    return (f"SELECT account_id, CAST(min(started_at) AS DATE) AS first_day FROM usage {where} "
            "GROUP BY account_id", params)


def first_usage_sql(con: duckdb.DuckDBPyConnection) -> tuple[str, list]:
    """SQL and parameters: `account_id, first_day` of every account with usage."""
    if not _has_state(con):
        return _fresh_sql(None)
    fresh, params = _fresh_sql(_mark(con))
    return (f"""SELECT account_id, min(first_day) AS first_day FROM (
                    SELECT account_id, first_day FROM {FIRST_USAGE}
                    UNION ALL {fresh}) GROUP BY account_id""", params)


def fold_first_usage(con: duckdb.DuckDBPyConnection) -> int:
    """Inside a run's transaction: fold the events loaded since the mark into the stored first
    days and move the mark; returns how many accounts' days were written."""
    mark = _mark(con)
    fresh, params = _fresh_sql(mark)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _fresh_first AS {fresh}", params)
    since = "WHERE loaded_at > ?" if mark else ""
    latest = scalar(con, f"SELECT max(loaded_at) FROM usage {since}", [mark] if mark else None)
    if latest is None:  # nothing loaded since
        return 0
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _moved_first AS
            SELECT f.account_id, f.first_day FROM _fresh_first f
            LEFT JOIN {FIRST_USAGE} s USING (account_id)
            WHERE s.first_day IS NULL OR f.first_day < s.first_day""")
    con.execute(f"DELETE FROM {FIRST_USAGE} s USING _moved_first m "
                "WHERE s.account_id = m.account_id")
    con.execute(f"INSERT INTO {FIRST_USAGE} SELECT account_id, first_day FROM _moved_first")
    con.execute(f"DELETE FROM {MARK}")
    con.execute(f"INSERT INTO {MARK} VALUES (?)", [latest])
    return int(scalar(con, "SELECT count(*) FROM _moved_first"))

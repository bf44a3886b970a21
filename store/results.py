"""Reads and writes of the results tables. Every run's results land in ONE transaction.

Idempotence: a recomputed (account, period) group is rewritten only when its content changed,
so a second run over the same inputs leaves every results table identical (run ids included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import duckdb
import polars as pl

from pipeline.contracts import (
    COUNTER_KEY,
    DECISIONS_SCHEMA,
    LINE_KEY,
    PARCEL_KEY,
    PLAN_CHANGE_SCHEMA,
)
from pipeline.documents import DocumentTerms
from store.clock import timed
from store.counter_writes import write_changed_counters
from store.documents import ISSUED, issue_documents, issue_invoice_numbers
from store.duck import frame, scalar
from store.faults import checkpoint
from store.first_usage import first_usage_sql, fold_first_usage
from store.key_checks import written_key_repeats
from store.runs import RunRecord, record_run
from store.staging import Stage, output_glob
from store.unit_rows import staged_rows_glob
from store.usage_state import write_usage_state

_LINE_COLUMNS = (
    "account_id, period, line_type, assignment_id, addon_id, service, destination_group, "
    "quantity, amount, currency, description"
)
_DECISION_COLUMNS = ", ".join(DECISIONS_SCHEMA)
_COUNTER_KEY = ", ".join(COUNTER_KEY)
_LIFECYCLE_COLUMNS = (
    "assignment_id, account_id, addon_id, fee_plan_id, start_date, end_date, eff_start, eff_end, "
    "billable, end_reason"
)
_PLAN_CHANGE_COLUMNS = ", ".join(PLAN_CHANGE_SCHEMA)


# Write what nothing stored yet holds without comparing it (a first night): off only to show,
# in tests, that the tables are those the comparing path gives.
FAST_PATHS = True


@dataclass
class ResultsBatch:
    """Everything one run writes: its `runs` row, and the staged Parquet outputs of its units
    (store/staging.py, `units/<period>/<shard>/<name>.parquet`, the charges and decisions
    `<name>.rows.parquet`), which `write_results` ingests.
    `scope` (one file per unit) lists the (account, period) groups the run recomputed, each with
    the invoice status it leaves (`draft` or `final`)."""

    run: RunRecord
    stage: Stage
    # A nightly's catalog and policy (store/usage_state.py): its drafts' state is kept for the
    # next night under it. None (a reprocess): the state of the groups it recomputed is dropped.
    usage_basis: str | None = None
    # The catalog's document numbering and payment terms (SPEC §9), used in the commit.
    terms: DocumentTerms = field(default_factory=DocumentTerms)


def _minor_factor_sql(column: str) -> str:
    """SQL for the exact DECIMAL factor 10^-minor_units, avoiding DOUBLE division."""
    return (
        f"CASE {column} WHEN 0 THEN 1.0000 WHEN 1 THEN 0.1000 WHEN 2 THEN 0.0100 "
        f"WHEN 3 THEN 0.0010 ELSE 0.0001 END"
    )


def _amount_sql(minor: str = "amount_minor", units: str = "minor_units") -> str:
    return f"CAST(CAST({minor} AS DECIMAL(38,0)) * {_minor_factor_sql(units)} AS DECIMAL(38,4))"


def _minor_sql(amount: str = "amount", units: str = "minor_units") -> str:
    """SQL for the integer minor units of a stored DECIMAL(38,4) amount: `_amount_sql`'s exact
    inverse (every stored amount is a whole number of 10^-4)."""
    return (
        f"CAST({amount} * 10000 AS BIGINT) // CASE {units} WHEN 0 THEN 10000 WHEN 1 THEN 1000 "
        f"WHEN 2 THEN 100 WHEN 3 THEN 10 ELSE 1 END"
    )


_QUANTITY_SQL = "CAST(CAST(quantity_units AS DECIMAL(38,0)) * 0.000001 AS DECIMAL(38,6))"


def read_final_periods(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`account_id, period` of every finalized (account, period), whether or not it had lines."""
    return frame(
        con,
        "SELECT DISTINCT account_id, period FROM invoices WHERE status = 'final' "
        "UNION SELECT DISTINCT account_id, period FROM finalized_periods"
    )


def read_locks(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`assignment_id, locked_start` of every activation-date lock."""
    return frame(con, "SELECT assignment_id, locked_start FROM activation_locks")


# The stored inputs a unit needs, as SQL: read whole by `explain`, exported by shard for units.
COUNTERS_BEFORE_SQL = f"""SELECT {_COUNTER_KEY}, CAST(value * 1000000 AS BIGINT) AS value_units
    FROM counter_periods
    WHERE reset = 'never' AND period < ?
    QUALIFY row_number() OVER (PARTITION BY {_COUNTER_KEY} ORDER BY period DESC) = 1"""
COUNTER_VALUES_SQL = f"""SELECT {_COUNTER_KEY}, CAST(value * 1000000 AS BIGINT) AS value_units
    FROM counter_periods WHERE period = ?"""


def read_counters_before(con: duckdb.DuckDBPyConnection, period: str) -> pl.DataFrame:
    """Never-reset counters as they stood at the end of the latest period before `period`."""
    return frame(con, COUNTERS_BEFORE_SQL, [period])


def read_counter_values(con: duckdb.DuckDBPyConnection, period: str) -> pl.DataFrame:
    """Counter values stored for `period`, in pipeline units."""
    return frame(con, COUNTER_VALUES_SQL, [period])


BILLED_LINES_SQL = f"""WITH billed AS (
        SELECT c.{_LINE_COLUMNS.replace(', ', ', c.')}, c.term_start, c.line_date
        FROM charges c JOIN invoices i USING (account_id, period)
        WHERE c.period = ? AND i.status = 'final'
        UNION ALL
        SELECT {_LINE_COLUMNS}, term_start, line_date FROM adjustments
        WHERE period = ?)
    SELECT b.* EXCLUDE (amount, quantity),
           {_minor_sql('b.amount', 'm.minor_units')} AS amount_minor,
           CAST(b.quantity * 1000000 AS BIGINT) AS quantity_units
    FROM billed b JOIN _currencies m USING (currency)"""  # needs `_currencies` registered


def read_billed_lines(
    con: duckdb.DuckDBPyConnection, period: str, currencies: pl.DataFrame
) -> pl.DataFrame:
    """Final lines of `period` plus the adjustments already made to them, in pipeline units."""
    con.register("_currencies", currencies.select("currency", "minor_units").to_arrow())
    try:
        return frame(con, BILLED_LINES_SQL, [period, period])
    finally:
        con.unregister("_currencies")


def read_first_activity(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`account_id, first_day`: the earliest assignment start or usage day of each account
    (the usage's from the stored first days and the events loaded since: store/first_usage.py)."""
    usage, params = first_usage_sql(con)
    return frame(
        con,
        f"""SELECT account_id, min(day) AS first_day FROM (
               SELECT account_id, start_date AS day FROM assignments
               UNION ALL
               SELECT account_id, first_day FROM ({usage}))
           GROUP BY account_id""",
        params or None,
    )


def last_nightly_as_of(con: duckdb.DuckDBPyConnection) -> date | None:
    """The as-of date of the latest successful nightly run, if any."""
    return scalar(con, "SELECT max(as_of) FROM runs WHERE kind = 'nightly' AND status = 'success'")


def _staged_table(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> int:
    """A temp table of staged rows (DuckDB spills it to disk beyond its memory limit)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return int(scalar(con, f"SELECT count(*) FROM {name}"))


def _group_prints(source: str, columns: str, types: dict[str, str]) -> str:
    """SQL: each (account, period) group of `source` with its row count and the sum of its rows'
    hashes, every column cast to the stored table's type (so that equal values hash equally)."""
    row = ", ".join(f"CAST({c} AS {types[c]})" for c in columns.split(", "))
    return (f"SELECT account_id, period, count(*) AS n, sum(hash({row})) AS h FROM {source} "
            "GROUP BY account_id, period")


def _replace_changed_groups(
    con: duckdb.DuckDBPyConnection, table: str, columns: str, staged: str, run_id: str,
    written: str = "_changed", insert: bool = True,
) -> int:
    """Rewrite the (account, period) groups of `table` in scope whose rows differ from `staged`
    (a table, or a parenthesized query over the units' files); returns how many. The groups
    written are left in the temp table `written` (`account_id, period`); `insert` False: the
    caller inserts their rows (the invoices, numbered first).

    Groups are compared by fingerprint: row count and the sum of the rows' 64-bit hashes, one
    hash aggregate on each side instead of a row-by-row EXCEPT ALL. Different fingerprints
    always mean different rows; equal fingerprints of different rows would need a hash
    collision. A group stored for the first time is new (its rows are not hashed); one no longer
    computed differs by its count. When nothing of `table` is stored in the run's scope (a first
    night, the new periods of a catch-up), every staged group is new: its rows go in straight
    from `staged`, with no fingerprint, no copy and no delete."""
    types = dict(con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [table],
    ).fetchall())
    stored = f"(SELECT * FROM {table} SEMI JOIN _scope USING (account_id, period))"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _stored_prints AS "
        f"{_group_prints(stored, columns, types)}"
    )
    if FAST_PATHS and not scalar(con, "SELECT count(*) FROM _stored_prints"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {written} AS "
                    f"SELECT DISTINCT account_id, period FROM {staged}")
        if insert:
            con.execute(f"INSERT INTO {table} BY NAME SELECT s.*, '{run_id}' AS run_id "
                        f"FROM {staged} s")
        return int(scalar(con, f"SELECT count(*) FROM {written}"))
    if staged.lstrip().startswith("("):  # read the units' files once, not three times
        con.execute(f"CREATE OR REPLACE TEMP TABLE _staged_rows AS SELECT * FROM {staged}")
        staged = "_staged_rows"
    # Only staged groups that are stored too need their rows hashed; a group stored for the
    # first time differs by being new.
    known = f"(SELECT * FROM {staged} SEMI JOIN _stored_prints USING (account_id, period))"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {written} AS
            SELECT account_id, period
            FROM ({_group_prints(known, columns, types)}) s
            FULL JOIN _stored_prints t USING (account_id, period)
            WHERE s.n IS DISTINCT FROM t.n OR s.h IS DISTINCT FROM t.h
            UNION ALL
            SELECT DISTINCT account_id, period FROM {staged}
            ANTI JOIN _stored_prints USING (account_id, period)"""
    )
    con.execute(
        f"DELETE FROM {table} t USING {written} c "
        f"WHERE t.account_id = c.account_id AND t.period = c.period"
    )
    if insert:
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT s.*, '{run_id}' AS run_id "
            f"FROM {staged} s SEMI JOIN {written} c USING (account_id, period)"
        )
    return int(scalar(con, f"SELECT count(*) FROM {written}"))


def _lines_sql(staged: str, extra: str = "") -> str:
    """SQL (parenthesized): the staged lines of `staged` as the tables hold them."""
    return f"""(SELECT account_id, period, line_type, assignment_id, addon_id, service,
              destination_group, {_QUANTITY_SQL} AS quantity, {_amount_sql()} AS amount,
              currency, description, term_start, line_date{extra}
            FROM {staged} LEFT JOIN _currencies USING (currency))"""


def _stage_lines(
    con: duckdb.DuckDBPyConnection, name: str, staged: str, extra: str = ""
) -> int:
    return _staged_table(con, name, f"SELECT * FROM {_lines_sql(staged, extra)}")


def write_results(
    con: duckdb.DuckDBPyConnection,
    batch: ResultsBatch,
    currencies: pl.DataFrame,
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, int]:
    """Ingest one run's staged results in ONE transaction (with `also`, e.g. the catalog tables)
    and write its `runs` row (timestamps from `batch.run`); returns what changed. `seconds`, if
    given, receives the wall time of each step (charges, invoices, ... commit).

    Nothing of the run's results passes through Python: each name is read by DuckDB from the
    units' Parquet files, compared with what is stored in SQL, and written."""
    run_id = batch.run.run_id
    counts: dict[str, int] = {}

    def staged(name: str) -> str:
        return output_glob(con, batch.stage, name)

    took = seconds if seconds is not None else {}
    con.register("_currencies", currencies.select("currency", "minor_units").to_arrow())
    con.execute("BEGIN TRANSACTION")
    try:
        # The run's row first: the documents it numbers are dated from it (store/documents.py).
        record_run(con, batch.run, "success")
        with timed(took, "charges"):
            _staged_table(
                con, "_scope", f"SELECT account_id, period, status FROM {staged('scope')}"
            )
            _touch(con, "SELECT period FROM _scope", create=True)
            line_cols = f"{_LINE_COLUMNS}, term_start, line_date"
            counts["charge_groups_rewritten"] = _replace_changed_groups(
                con, "charges", line_cols,
                f"(SELECT * EXCLUDE (run_id) FROM {staged_rows_glob(con, batch.stage, 'charges')})",
                run_id,
                written="_written_charges",
            )
        checkpoint("mid-write")

        with timed(took, "invoices"):
            _staged_table(
                con, "_new_invoices",
                f"""SELECT i.account_id, i.period, i.currency,
                           {_amount_sql('total_minor')} AS total, s.status
                    FROM {staged('invoices')} i LEFT JOIN _currencies USING (currency)
                    JOIN _scope s USING (account_id, period)""",
            )
            counts["invoices_rewritten"] = _replace_changed_groups(
                con, "invoices", "account_id, period, currency, total, status", "_new_invoices",
                run_id, written="_written_invoices", insert=False,
            )
        with timed(took, "documents"):  # numbered before they go in (store/documents.py)
            invoices_issued = issue_invoice_numbers(
                con, run_id, batch.terms,
                fresh="(SELECT * FROM _new_invoices SEMI JOIN _written_invoices "
                      "USING (account_id, period))",
            )
            _touch(con, f"SELECT period FROM {ISSUED}")  # stored invoices numbered too
        with timed(took, "invoices"):
            numbers, join = (
                ("n.document_number AS invoice_number, n.issued_on, n.due_on",
                 f"LEFT JOIN {ISSUED} n USING (account_id, period)") if invoices_issued
                else ("NULL AS invoice_number", ""))
            con.execute(
                f"""INSERT INTO invoices BY NAME
                    SELECT s.*, '{run_id}' AS run_id, {numbers}
                    FROM _new_invoices s SEMI JOIN _written_invoices USING (account_id, period)
                    {join}"""
            )

        with timed(took, "decisions"):
            counts["decision_groups_rewritten"] = _replace_changed_groups(
                con, "decisions", _DECISION_COLUMNS,
                f"(SELECT {_DECISION_COLUMNS} FROM "
                f"{staged_rows_glob(con, batch.stage, 'decisions')})", run_id,
            )
        checkpoint("mid-commit")

        with timed(took, "adjustments"):
            adjustments = _stage_lines(
                con, "_new_adjustments", staged("adjustments"), ", reason"
            )
            if adjustments:
                con.execute(
                    f"INSERT INTO adjustments BY NAME SELECT *, '{run_id}' AS run_id "
                    f"FROM _new_adjustments"
                )
                _touch(con, "SELECT period FROM _new_adjustments")
            counts["adjustments"] = adjustments

        with timed(took, "counters"):
            counts["counters_written"] = _write_counters(con, staged, run_id)
            if _staged_table(con, "_parcel_scope",
                             f"SELECT account_id, window_start FROM {staged('parcel_scope')}"):
                counts["parcels_rewritten"] = _write_parcels(con, staged, run_id)
                _touch(con, "SELECT strftime(window_start, '%Y-%m') FROM _parcel_scope")
        with timed(took, "lifecycles"):
            # One life cycle per assignment: the one of the first period that billed it (the
            # settle round, period null, has only accounts no period billed).
            if _staged_table(
                con, "_new_lifecycles",
                f"""SELECT {_LIFECYCLE_COLUMNS}, period FROM {staged('lifecycles')}
                    QUALIFY row_number() OVER (PARTITION BY assignment_id
                                               ORDER BY period NULLS LAST) = 1""",
            ):
                counts["lifecycles_rewritten"] = _write_lifecycles(con, run_id)
            # SPEC §8.1: one verdict per change, like the life cycles: the first period's.
            if _staged_table(
                con, "_new_plan_changes",
                f"""SELECT {_PLAN_CHANGE_COLUMNS}, period FROM {staged('plan_changes')}
                    QUALIFY row_number() OVER (PARTITION BY assignment_id, effective_from
                                               ORDER BY period NULLS LAST) = 1""",
            ):
                counts["plan_changes_rewritten"] = _write_plan_changes(con, run_id)
            if _staged_table(
                con, "_new_locks",
                f"""SELECT n.assignment_id, n.locked_start FROM {staged('locks')} n
                    SEMI JOIN _new_lifecycles k ON n.assignment_id = k.assignment_id
                      AND n.period IS NOT DISTINCT FROM k.period""",
            ):
                con.execute(
                    f"""INSERT INTO activation_locks
                        SELECT n.assignment_id, n.locked_start, '{run_id}' FROM _new_locks n
                        ANTI JOIN activation_locks l USING (assignment_id)"""
                )
            _mark_finalized(con, run_id)
        with timed(took, "usage state"):
            counts["drafts_marked"] = write_usage_state(con, staged, run_id, batch.usage_basis)
            fold_first_usage(con)
        with timed(took, "catalog and views"):
            if also is not None:
                also(con)
        with timed(took, "documents"):  # the notes (store/documents.py)
            counts.update(issue_documents(con, run_id, batch.terms, invoices_issued))
            # The notes, and the adjustments they numbered.
            _touch(con, f"SELECT period FROM documents WHERE run_id = '{run_id}'")
        with timed(took, "invariants"):
            _written_groups(con)
            _check_invariants(con, "_written")
            _check_written_keys(con)
        checkpoint("before-commit")
        with timed(took, "commit"):
            con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_currencies")
    # Fold the WAL into the file so the analyst snapshot copied next is self-contained.
    with timed(took, "checkpoint"):
        con.execute("CHECKPOINT")
    return counts


# The periods a run wrote in any period-split table (a temp table, left in the connection with
# `_scope`): the publication reads only their partitions to find what changed, and writes
# them again (store/parquet_set.py; flows/publish.py periods_touched).
TOUCHED = "_touched_periods"


def _touch(con: duckdb.DuckDBPyConnection, periods: str, create: bool = False) -> None:
    """Add the periods `periods` (SQL, one column) to `TOUCHED` (`create`: start it empty)."""
    if create:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TOUCHED} (period VARCHAR)")
    con.execute(f"INSERT INTO {TOUCHED} SELECT DISTINCT v FROM ({periods}) AS t(v) "
                "WHERE v IS NOT NULL")


def _any_row(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether `table` holds a row (it reads one at most)."""
    return bool(scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)"))


def _write_counters(
    con: duckdb.DuckDBPyConnection, staged: Callable[[str], str], run_id: str
) -> int:
    """Write the counter windows and per-period values whose value changed; shift later periods
    of never-reset windows by the change reprocessing made (roll-forward): store/counter_writes.py.
    """
    written = _staged_table(
        con, "_new_counters",
        f"""SELECT {_COUNTER_KEY}, period,
              CAST(CAST(value_units AS DECIMAL(38,0)) * 0.000001 AS DECIMAL(38,6)) AS value
            FROM {staged('counters')}""",
    )
    shifts = _staged_table(con, "_shift", f"SELECT * FROM {staged('counter_shift')}")
    if FAST_PATHS and not shifts and not _any_row(con, "counter_periods") and not _any_row(
            con, "discount_counters"):
        # Nothing stored (a first night): every window and value is new, and each window's
        # latest value is among the run's own. Plain inserts, no comparison.
        _touch(con, "SELECT period FROM _new_counters")
        con.execute(f"INSERT INTO counter_periods BY NAME SELECT n.*, '{run_id}' AS run_id "
                    "FROM _new_counters n")
        con.execute(
            f"""INSERT INTO discount_counters BY NAME
                SELECT {_COUNTER_KEY}, value, period, '{run_id}' AS run_id FROM _new_counters
                QUALIFY row_number() OVER (PARTITION BY {_COUNTER_KEY} ORDER BY period DESC)
                  = 1"""
        )
        return written
    write_changed_counters(con, run_id, lambda periods: _touch(con, periods))
    return written


_PARCEL_KEY = ", ".join(PARCEL_KEY)


PARCELS_BEFORE_SQL = f"""SELECT {_PARCEL_KEY}, expires_after_window_start,
           CAST(remaining * 1000000 AS BIGINT) AS remaining_units
    FROM quota_rollovers WHERE window_start >= ? AND window_start < ?"""


def parcels_before_params(period: str) -> list[date]:
    """The window starts of the period before `period` (any billing day): [previous, first)."""
    first = date(int(period[:4]), int(period[5:]), 1)
    previous = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    return [previous, first]


def read_parcels_before(con: duckdb.DuckDBPyConnection, period: str) -> pl.DataFrame:
    """Rollover parcels left at the end of the period before `period` (any billing day), in
    pipeline units (`remaining_units`)."""
    return frame(con, f"{PARCELS_BEFORE_SQL} ORDER BY {_PARCEL_KEY}", parcels_before_params(period))


def _write_parcels(
    con: duckdb.DuckDBPyConnection, staged: Callable[[str], str], run_id: str
) -> int:
    """Replace the parcels of the recomputed (account, window_start) groups (`_parcel_scope`);
    rows that did not change keep their run_id, so unchanged inputs change nothing."""
    columns = f"{_PARCEL_KEY}, expires_after_window_start, remaining"
    _staged_table(
        con, "_new_parcels",
        f"""SELECT {_PARCEL_KEY}, expires_after_window_start,
                   CAST(CAST(remaining_units AS DECIMAL(18,0)) * 0.000001 AS DECIMAL(18,6))
                     AS remaining
            FROM {staged('parcels')}""",
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _gone_parcels AS
            SELECT {columns} FROM quota_rollovers q SEMI JOIN _parcel_scope USING
              (account_id, window_start)
            EXCEPT SELECT {columns} FROM _new_parcels"""
    )
    same = " AND ".join(f"q.{c} = g.{c}" for c in _PARCEL_KEY.split(", "))
    con.execute(f"DELETE FROM quota_rollovers q USING _gone_parcels g WHERE {same}")
    con.execute(
        f"""INSERT INTO quota_rollovers BY NAME
            SELECT n.*, '{run_id}' AS run_id FROM _new_parcels n
            ANTI JOIN quota_rollovers q USING ({_PARCEL_KEY})"""
    )
    return int(scalar(con, "SELECT count(*) FROM _gone_parcels"))


def _replace_changed_rows(
    con: duckdb.DuckDBPyConnection, table: str, columns: str, key: str, new: str, run_id: str
) -> int:
    """Replace the rows of `table` whose content differs from the one row per `key` of `new`
    (idempotent: a row that did not change keeps its run_id); returns how many. Only the stored
    rows of the keys in `new` are compared, not the whole table; when none is stored (a first
    night), every row of `new` goes in as it is, with no comparison and no delete."""
    on = " AND ".join(f"{table}.{k} = c.{k}" for k in key.split(", "))
    stored = f"(SELECT {columns} FROM {table} SEMI JOIN {new} USING ({key}))"
    if not FAST_PATHS or scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {stored} LIMIT 1)"):
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _changed_rows AS
                SELECT {columns} FROM {new} EXCEPT SELECT {columns} FROM {stored}"""
        )
        con.execute(f"DELETE FROM {table} USING _changed_rows c WHERE {on}")
        changed = "_changed_rows"
    else:
        changed = new
    con.execute(f"INSERT INTO {table} SELECT {columns}, '{run_id}' FROM {changed}")
    return int(scalar(con, f"SELECT count(*) FROM {changed}"))


def _write_lifecycles(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Replace the settled life cycles (`_new_lifecycles`) whose content changed (idempotent)."""
    return _replace_changed_rows(con, "assignment_lifecycles", _LIFECYCLE_COLUMNS,
                                 "assignment_id", "_new_lifecycles", run_id)


def _write_plan_changes(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Replace the verdicts on changes (`_new_plan_changes`) whose content changed, keyed by
    (assignment_id, effective_from), as `_write_lifecycles` does (idempotent)."""
    return _replace_changed_rows(con, "plan_change_verdicts", _PLAN_CHANGE_COLUMNS,
                                 "assignment_id, effective_from", "_new_plan_changes", run_id)


def _mark_finalized(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Remember (account, period) groups finalized without any line, so that no run reopens them,
    and the run that finalized each (store/late_usage.py)."""
    con.execute(
        f"""INSERT INTO finalized_periods (account_id, period, run_id)
           SELECT s.account_id, s.period, '{run_id}' FROM _scope s
           ANTI JOIN finalized_periods f USING (account_id, period)
           WHERE s.status = 'final'"""
    )


class InvariantError(RuntimeError):
    """The results tables break one of their documented invariants; the run is rolled back."""


def _written_groups(con: duckdb.DuckDBPyConnection) -> None:
    """The temp table `_written`: the (account, period) groups whose charges or invoice the run
    wrote (`_written_charges`, `_written_invoices`)."""
    con.execute("""CREATE OR REPLACE TEMP TABLE _written AS
                   SELECT account_id, period FROM _written_charges
                   UNION SELECT account_id, period FROM _written_invoices""")


def _check_invariants(con: duckdb.DuckDBPyConnection, groups: str = "_scope") -> None:
    """Keys are unique and every invoice total equals the sum of its lines (dbt-style tests),
    over the (account, period) groups of the temp table `groups`: the run passes the groups it
    wrote (`_written`); a group it kept as it was is the one an earlier run wrote and checked.

    The line keys are compared by their 64-bit hash first (one narrow GROUP BY): equal keys
    hash equally, so no repeated hash means no repeated key, and only a repeated hash (a real
    duplicate, or a collision) takes the exact GROUP BY of the key's columns."""
    charges = f"(SELECT * FROM charges SEMI JOIN {groups} USING (account_id, period))"
    invoices = f"(SELECT * FROM invoices SEMI JOIN {groups} USING (account_id, period))"
    key = ", ".join(LINE_KEY)

    def check(name: str, bad: int) -> None:
        if bad:
            raise InvariantError(f"{name}: {bad} row(s)")

    check("duplicate invoice key", scalar(
        con, f"SELECT count(*) FROM (SELECT account_id, period FROM {invoices} "
        "GROUP BY ALL HAVING count(*) > 1)"))
    if scalar(con, f"SELECT count(*) FROM (SELECT hash({key}) AS h FROM {charges} "
                   "GROUP BY h HAVING count(*) > 1)"):
        check("duplicate charge line key", scalar(
            con, f"SELECT count(*) FROM (SELECT {key} FROM {charges} "
            "GROUP BY ALL HAVING count(*) > 1)"))
    # One aggregate of the lines by group, joined with the invoices both ways.
    totals, orphans = con.execute(
        f"""WITH c AS (SELECT account_id, period, sum(amount) AS s FROM {charges} GROUP BY ALL)
            SELECT count(*) FILTER (WHERE i.account_id IS NOT NULL
                                      AND i.total IS DISTINCT FROM coalesce(c.s, 0)),
                   count(*) FILTER (WHERE i.account_id IS NULL)
            FROM c FULL JOIN {invoices} i USING (account_id, period)"""
    ).fetchone()
    check("invoice total differs from the sum of its lines", totals)
    check("charge lines without an invoice", orphans)


def _check_written_keys(con: duckdb.DuckDBPyConnection) -> None:
    """No key the run wrote is held by two rows, in the tables without a key index
    (store/key_checks.py)."""
    for table, bad in written_key_repeats(con).items():
        if bad:
            raise InvariantError(f"duplicate {table} key: {bad} key(s)")


@dataclass(frozen=True)
class StagedTotals:
    """Small aggregates of a run's staged outputs, for its summary and artifacts: the
    coordinator never reads a whole run's lines."""

    charge_lines: int
    invoices: pl.DataFrame  # currency, invoices, total_minor
    revenue: pl.DataFrame  # period, addon_id, currency, net_minor, lines
    adjustments: pl.DataFrame  # the adjustment lines (differences only: few)
    # kind, issued, first, last: the document numbers the run issued (SPEC §9)
    documents: pl.DataFrame = field(default_factory=pl.DataFrame)
    late_usage: dict[str, int] = field(default_factory=dict)  # period -> late events waiting


def read_staged_totals(
    con: duckdb.DuckDBPyConnection, stage: Stage, currencies: pl.DataFrame
) -> StagedTotals:
    """Aggregate the staged charges and invoices of a run in DuckDB. The charges are read from
    the units' table-shaped rows (store/unit_rows.py, the only charges they write), their
    amounts turned back into minor units by `currencies` (currency, minor_units)."""
    charges = staged_rows_glob(con, stage, "charges")
    con.register("_currencies", currencies.select("currency", "minor_units").to_arrow())
    try:
        revenue = frame(
            con,
            f"""SELECT period, addon_id, currency,
                       {_minor_sql('sum(amount)', 'any_value(minor_units)')} AS net_minor,
                       CAST(count(*) AS UINTEGER) AS lines
                FROM {charges} LEFT JOIN _currencies USING (currency)
                GROUP BY period, addon_id, currency
                ORDER BY period NULLS LAST, addon_id NULLS LAST, currency NULLS LAST""",
        )
    finally:
        con.unregister("_currencies")
    return StagedTotals(
        charge_lines=int(scalar(con, f"SELECT count(*) FROM {charges}")),
        invoices=frame(
            con,
            f"""SELECT currency, count(*) AS invoices, CAST(sum(total_minor) AS BIGINT)
                       AS total_minor
                FROM {output_glob(con, stage, 'invoices')} GROUP BY currency ORDER BY currency""",
        ),
        revenue=revenue,
        adjustments=frame(con, f"SELECT * FROM {output_glob(con, stage, 'adjustments')}"),
        documents=frame(
            con,
            """SELECT kind, count(*) AS issued, arg_min(document_number, sequence) AS first,
                      arg_max(document_number, sequence) AS last
               FROM documents WHERE run_id = ? GROUP BY kind
               ORDER BY CASE kind WHEN 'invoice' THEN 0 WHEN 'credit_note' THEN 1 ELSE 2 END""",
            [stage.run_id],
        ),
    )

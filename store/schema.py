"""DDL of the raw-input and run-log tables, and the connection that creates the whole schema.

Layers (STYLE §5): the raw inputs come first (this file), then the results tables of
`results_schema.py`, executed as they are. Money and quantities are DECIMAL, dates DATE,
timestamps TIMESTAMP (UTC, without zone).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.contracts import COUNTER_KEY, RESULT_KEYS
from store.duck import quiet
from store.results_schema import ADDED_COLUMNS, RESULTS_DDL, STATE_DDL

RAW_DDL: list[str] = [
    # Grain: one row per catalog text ever loaded; the highest version is the current catalog.
    """CREATE TABLE IF NOT EXISTS catalog_versions (
        version INTEGER PRIMARY KEY, sha256 VARCHAR NOT NULL, text VARCHAR NOT NULL,
        source VARCHAR NOT NULL, loaded_at TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL)""",
    # Grain: one row per account and effective_from (one per main-product version). A reloaded
    # row with the same key and other values replaces the stored one.
    """CREATE TABLE IF NOT EXISTS accounts (
        account_id VARCHAR NOT NULL, currency VARCHAR NOT NULL, main_product_id VARCHAR NOT NULL,
        billing_day INTEGER NOT NULL, status VARCHAR NOT NULL, opened_on DATE NOT NULL,
        closed_on DATE, effective_from DATE NOT NULL,
        source VARCHAR NOT NULL, line BIGINT NOT NULL, run_id VARCHAR NOT NULL,
        loaded_at TIMESTAMP NOT NULL)""",
    # Grain: one row per delivered version of an assignment, base (`effective_from` null) or
    # change (SPEC §8.1); `load_seq` grows with every version loaded. A change row holds its base
    # version's `start_date` and `assigned_at`. `effective_from` is the last column: a database
    # made before it gets it added (below), and both then have the same column order.
    """CREATE TABLE IF NOT EXISTS assignment_versions (
        assignment_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL, addon_id VARCHAR NOT NULL,
        fee_plan_id VARCHAR, start_date DATE NOT NULL, end_date DATE,
        assigned_at TIMESTAMP NOT NULL, quantity INTEGER NOT NULL,
        load_seq BIGINT NOT NULL, source VARCHAR NOT NULL, line BIGINT NOT NULL,
        run_id VARCHAR NOT NULL, loaded_at TIMESTAMP NOT NULL, effective_from DATE)""",
    "ALTER TABLE assignment_versions ADD COLUMN IF NOT EXISTS effective_from DATE",
    # Grain: one row per assignment_id: its current base version (the latest delivered row
    # without `effective_from`), with the `end_date` of the latest delivered row of any kind,
    # base or change (SPEC §8.1). `load_seq`, `source` and `line` are the base version's.
    """CREATE OR REPLACE VIEW assignments AS
        SELECT b.assignment_id, b.account_id, b.addon_id, b.fee_plan_id, b.start_date,
               CASE WHEN c.load_seq > b.load_seq THEN c.end_date ELSE b.end_date END
                 AS end_date,
               b.assigned_at, b.quantity, b.load_seq, b.source, b.line
        FROM (SELECT * FROM assignment_versions WHERE effective_from IS NULL
              QUALIFY row_number() OVER (PARTITION BY assignment_id ORDER BY load_seq DESC) = 1
             ) b
        LEFT JOIN (SELECT assignment_id, load_seq, end_date
                   FROM assignment_versions WHERE effective_from IS NOT NULL
                   QUALIFY row_number() OVER (PARTITION BY assignment_id
                                              ORDER BY load_seq DESC) = 1
                  ) c USING (assignment_id)""",
    # Grain: one row per (assignment_id, effective_from): the current version of each change
    # of an assignment's fee plan or quantity (SPEC §8.1), its latest delivered row.
    """CREATE OR REPLACE VIEW assignment_changes AS
        SELECT assignment_id, effective_from, account_id, addon_id, fee_plan_id, quantity,
               end_date, load_seq, source, line
        FROM assignment_versions WHERE effective_from IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY assignment_id, effective_from
                                   ORDER BY load_seq DESC) = 1""",
    # Grain: one row per event_id (an event is never billed twice).
    """CREATE TABLE IF NOT EXISTS usage (
        event_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL, service VARCHAR NOT NULL,
        destination_group VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL,
        quantity DECIMAL(18,6) NOT NULL, amount DECIMAL(18,6) NOT NULL,
        source VARCHAR NOT NULL, line BIGINT NOT NULL, run_id VARCHAR NOT NULL,
        loaded_at TIMESTAMP NOT NULL)""",
    # Grain: one row per distinct (source, line, reason, raw) ever rejected.
    """CREATE TABLE IF NOT EXISTS rejected_rows (
        source VARCHAR NOT NULL, line BIGINT NOT NULL, reason VARCHAR NOT NULL,
        raw VARCHAR NOT NULL, run_id VARCHAR NOT NULL, rejected_at TIMESTAMP NOT NULL)""",
    # Grain: one row per run of any kind (load, nightly, reprocess, ...).
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, period VARCHAR, as_of DATE,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, status VARCHAR NOT NULL,
        rows_in BIGINT, rows_out BIGINT, message VARCHAR)""",
]


# Tables whose rows are only ever added, never changed or deleted (loads and runs insert; usage
# is keyed by event, and a finalized period is corrected by new adjustment rows). The analyst
# copy appends their new runs' rows instead of copying them whole (store/snapshot.py).
APPEND_ONLY_TABLES = frozenset({
    "usage", "rejected_rows", "runs", "catalog_versions", "assignment_versions", "adjustments",
    "activation_locks", "documents",
})


# Tables a run rewrites by groups of rows, every row of a group it writes carrying its run_id,
# with the columns that identify a group. The analyst copy replaces just the groups of the runs
# it does not hold yet (store/snapshot.py), then checks the table's fingerprint.
RUN_GROUPED_TABLES: dict[str, tuple[str, ...]] = {
    "charges": ("account_id", "period"),
    "invoices": ("account_id", "period"),
    "decisions": ("account_id", "period"),
    "discount_counters": tuple(COUNTER_KEY),
    "counter_periods": (*COUNTER_KEY, "period"),
}


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and view that is missing; existing ones are left as they are."""
    for statement in [*RAW_DDL, *RESULTS_DDL, *STATE_DDL]:
        con.execute(statement)
    have = set(con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall())
    for table, column, sql_type in ADDED_COLUMNS:  # a database made before the column existed
        if (table, column) not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    _drop_key_indexes(con)


def _drop_key_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """A database made when the results tables declared their keys (pipeline.contracts
    `RESULT_KEYS`) has their tables copied once into tables without them, in one transaction:
    the commit then no longer maintains and rewrites their indexes (store/results_schema.py).
    The rows, their order and the columns stay as they are."""
    keyed = [t for (t,) in con.execute(
        "SELECT DISTINCT table_name FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND constraint_type = 'PRIMARY KEY'").fetchall() if t in RESULT_KEYS]
    if not keyed:
        return
    ddl = {t: next(d for d in RESULTS_DDL if f" {t} (" in d) for t in keyed}
    con.execute("BEGIN TRANSACTION")
    try:
        for table in keyed:
            con.execute(f"ALTER TABLE {table} RENAME TO {table}__keyed")
            con.execute(ddl[table])
            for added, column, sql_type in ADDED_COLUMNS:
                if added == table:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "
                                f"{column} {sql_type}")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}__keyed")
            con.execute(f"DROP TABLE {table}__keyed")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")


def connect(
    path: str | Path, read_only: bool = False, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the billrun database at `path`; a writable connection also creates the schema.

    `memory_limit` (e.g. `"1GB"`) caps DuckDB's buffer pool, which otherwise grows to 80 % of
    the machine; DuckDB spills to disk beyond it.
    """
    config = {"memory_limit": memory_limit} if memory_limit else {}
    if read_only:
        return quiet(duckdb.connect(str(path), read_only=True, config=config))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = quiet(duckdb.connect(str(path), config=config))
    try:
        create_schema(con)
    except Exception:
        con.close()
        raise
    return con

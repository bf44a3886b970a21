"""The analyst copy: a read-only snapshot file, swapped in atomically after each successful run.

DuckDB allows one writing process or many reading processes per file, never both. Analysts open
the snapshot, never the working database, so a notebook left open cannot make a run fail, and a
run cannot make a notebook fail: `os.replace` swaps the directory entry while open readers keep
the old file.

The copy is written in an older storage format (`ANALYST_STORAGE_VERSION`), not copied byte for
byte: the working file is in DuckDB 2's format, which no DuckDB 1.x tool (the `duckdb` CLI,
notebooks, BI drivers) can open. Each new copy starts from the previous copy's file and copies
again only the tables whose content changed (`billrun_meta.fingerprints` inside the copy), so a
night that adds a day of usage does not rewrite the catalog, the accounts or the assignments.
The results are also published as Parquet (store/parquet_set.py).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from store.clock import timed
from store.duck import quiet
from store.faults import checkpoint
from store.parquet_set import parquet_pointer, publish_parquet, write_parquet_set
from store.results_schema import STATE_SCHEMA
from store.schema import APPEND_ONLY_TABLES, RUN_GROUPED_TABLES

# The oldest storage format DuckDB 2 writes that keeps every type and view we use (DECIMAL,
# DATE, TIMESTAMP, BOOLEAN; views with FILTER, QUALIFY, GROUP BY ALL, ordered string_agg):
# checked readable by DuckDB 0.10.3 and by the `duckdb-cli` 1.5 package (tests/store).
ANALYST_STORAGE_VERSION = "v0.10.0"


def analyst_path(db_path: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.analyst.duckdb`, beside it."""
    db = Path(db_path)
    return db.with_name(f"{db.stem}.analyst{db.suffix or '.duckdb'}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_staging(target: Path) -> list[Path]:
    """Remove the `.<analyst>.tmp-<pid>` files left by publishers killed mid-copy.

    A file whose pid is gone (or is this process) has no writer left. A live pid's file is
    kept: the pid may have been reused, but a live publisher must never lose its copy.
    """
    swept = []
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1].removesuffix(".wal")  # the copy and its WAL
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            stale.unlink(missing_ok=True)
            swept.append(stale)
    return swept


def _sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# Inside the analyst copy: what each copied table held, so the next copy re-copies only the
# tables that changed (a nightly changes the results and a day of usage, not the catalog).
FINGERPRINTS_SCHEMA = "billrun_meta"
FINGERPRINTS_TABLE = f"{FINGERPRINTS_SCHEMA}.fingerprints"


def _fingerprint(con: duckdb.DuckDBPyConnection, database: str, schema: str, table: str) -> str:
    rows, hashes = con.execute(
        f'SELECT count(*), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) '
        f'FROM {database}."{schema}"."{table}" t'
    ).fetchone()
    return f"{rows}:{hashes}"


def _tables(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str]]:
    """`(schema, table)` of every table of the attached `database`, the fingerprints and the
    incremental nightly's run state aside (not results: nothing an analyst reads)."""
    return con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
        "AND schema_name NOT IN (?, ?) ORDER BY ALL",
        [database, FINGERPRINTS_SCHEMA, STATE_SCHEMA],
    ).fetchall()


def table_fingerprints(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, str]:
    """`table -> "rows:sum of row hashes"` for every table of the attached `database`: equal
    fingerprints mean the same multiset of rows (up to a 64-bit hash collision per row sum)."""
    return {table: _fingerprint(con, database, schema, table)
            for schema, table in _tables(con, database)}


def _add_new_runs(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, key: tuple[str, ...], want: str
) -> bool:
    """Bring the copy's `table` up to date with the rows of the runs it does not hold yet:
    appended as they are (`key` empty: an append-only table), or replacing the groups (rows
    sharing `key`) those runs rewrote. True when the copy's table then has the working table's
    fingerprint `want`; else (a run removed a whole group, or changed a row under an old run
    id) the caller copies it whole."""
    new_rows = f"""SELECT w.* FROM work."{schema}"."{table}" w
        ANTI JOIN (SELECT DISTINCT run_id FROM snap.main."{table}") s USING (run_id)"""
    try:
        if key:  # the new rows are read twice (their groups, then themselves): keep them once
            con.execute(f"CREATE OR REPLACE TEMP TABLE _new_rows AS {new_rows}")
            new_rows = "SELECT * FROM _new_rows"
            on = " AND ".join(f't."{c}" = g."{c}"' for c in key)  # key columns are NOT NULL
            columns = ", ".join(f'"{c}"' for c in key)
            con.execute(
                f"""DELETE FROM snap.main."{table}" t
                    USING (SELECT DISTINCT {columns} FROM _new_rows) g WHERE {on}"""
            )
        con.execute(f'INSERT INTO snap.main."{table}" {new_rows}')
    except duckdb.Error:  # the table's columns changed since the copy was made
        return False
    finally:
        con.execute("DROP TABLE IF EXISTS _new_rows")
    return _fingerprint(con, "snap", "main", table) == want


@dataclass(frozen=True)
class AnalystCopy:
    """What one analyst copy holds (`prints`: each table's fingerprint), which tables this copy
    wrote anew, and which append-only tables it only appended new runs' rows to (the others
    came with the previous copy's file)."""

    prints: dict[str, str]
    copied: tuple[str, ...]
    appended: tuple[str, ...] = ()
    patched: tuple[str, ...] = ()  # only the groups that newer runs rewrote were replaced


def _stored_prints(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    try:
        return dict(con.execute(f"SELECT table_name, fingerprint FROM snap.{FINGERPRINTS_TABLE}")
                    .fetchall())
    except duckdb.CatalogException:  # a copy made before fingerprints were kept
        return {}


def _open_copy(
    con: duckdb.DuckDBPyConnection, target: Path, previous: Path | None
) -> dict[str, str]:
    """Attach `target` as `snap`: a byte copy of `previous` when it is a readable analyst copy
    (returns its fingerprints), else a new empty file in `ANALYST_STORAGE_VERSION`."""
    if previous is not None and previous.exists():
        try:
            shutil.copyfile(previous, target)
            con.execute(f"ATTACH {_sql_text(target)} AS snap")
            return _stored_prints(con)
        except (OSError, duckdb.Error):  # unreadable or half-written: start over
            con.execute("DETACH DATABASE IF EXISTS snap")
            target.unlink(missing_ok=True)
    con.execute(
        f"ATTACH {_sql_text(target)} AS snap (STORAGE_VERSION '{ANALYST_STORAGE_VERSION}')"
    )
    return {}


def write_analyst_copy(
    db_path: str | Path, target: str | Path, previous: str | Path | None = None
) -> AnalystCopy:
    """Copy every table and view of the (closed) working database into a new file `target`,
    in `ANALYST_STORAGE_VERSION`'s format.

    With `previous` (the analyst copy in place), `target` starts as a byte copy of it, and only
    the tables whose fingerprint changed are copied again; an append-only table (`usage`, say)
    gets just the rows of the runs the copy does not hold, and a table a run rewrites by groups
    (`charges`, say: store.schema.RUN_GROUPED_TABLES) just the groups those runs rewrote, each
    when that gives the table's fingerprint.
    Views are always recreated.

    Tables are copied without their keys (CREATE TABLE AS): DuckDB 2 writes its key indexes in a
    form DuckDB 0.10 cannot read, whatever the storage version, and the copy is read-only, so the
    keys protect nothing there (docs/TABLES.md gives each table's grain)."""
    target = Path(target)
    con = quiet(duckdb.connect())
    try:
        con.execute(f"ATTACH {_sql_text(db_path)} AS work (READ_ONLY)")
        prints = table_fingerprints(con, "work")
        kept = _open_copy(con, target, Path(previous) if previous is not None else None)
        tables = _tables(con, "work")
        views = con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'work' "
            "AND NOT internal ORDER BY view_name"
        ).fetchall()
        con.execute("USE snap")  # the views' unqualified names must bind to the copy's tables
        for (view,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = 'snap' AND NOT internal"
        ).fetchall():
            con.execute(f'DROP VIEW "{view}"')
        in_copy = {table for _, table in _tables(con, "snap")}
        for table in in_copy - set(prints):
            con.execute(f'DROP TABLE "{table}"')
        copied, appended, patched = [], [], []
        for schema, table in tables:
            if kept.get(table) == prints[table]:
                continue
            key = () if table in APPEND_ONLY_TABLES else RUN_GROUPED_TABLES.get(table)
            if (table in in_copy and key is not None
                    and _add_new_runs(con, schema, table, key, prints[table])):
                (patched if key else appended).append(table)
                continue
            con.execute(f'DROP TABLE IF EXISTS "{table}"')
            con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM work."{schema}"."{table}"')
            copied.append(table)
        _create_views(con, dict(views))
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {FINGERPRINTS_SCHEMA}")
        con.execute(
            f"CREATE OR REPLACE TABLE {FINGERPRINTS_TABLE} "
            "(table_name VARCHAR, fingerprint VARCHAR)"
        )
        con.executemany(f"INSERT INTO {FINGERPRINTS_TABLE} VALUES (?, ?)", list(prints.items()))
        con.execute("USE memory")
        con.execute("DETACH snap")
    finally:
        con.close()
    return AnalystCopy(prints, tuple(copied), tuple(appended), tuple(patched))


def _create_views(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """Create the views, each after the views it reads (in rounds: a view whose dependency is
    not there yet fails and is retried in the next round)."""
    pending = dict(views)
    while pending:
        failed: dict[str, str] = {}
        error: duckdb.Error | None = None
        for name, sql in pending.items():
            try:
                con.execute(sql)
            except duckdb.CatalogException as exc:
                failed[name], error = sql, exc
        if len(failed) == len(pending) and error is not None:
            raise error
        pending = failed


def publish_snapshot(
    db_path: str | Path, tag: str | None = None, seconds: dict[str, float] | None = None
) -> Path:
    """Publish the (closed, checkpointed) working database to analysts: the analyst copy and the
    Parquet set, each swapped in atomically; `tag` names the Parquet set (the run id). Both
    reuse what the previous publication wrote for the tables that did not change. `seconds`,
    if given, receives the wall time of each of the two."""
    took = seconds if seconds is not None else {}
    target = analyst_path(db_path)
    sweep_stale_staging(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    staging.unlink(missing_ok=True)
    parquet_set = None
    try:
        with timed(took, "analyst copy"):
            copy = write_analyst_copy(db_path, staging, target)
            with open(staging, "rb") as handle:
                os.fsync(handle.fileno())
        with timed(took, "parquet set"):
            parquet_set = write_parquet_set(staging, parquet_pointer(db_path), tag, copy.prints)
        checkpoint("mid-publish")
        os.replace(staging, target)
        publish_parquet(parquet_pointer(db_path), parquet_set)
    finally:
        staging.unlink(missing_ok=True)
        Path(f"{staging}.wal").unlink(missing_ok=True)
    return target

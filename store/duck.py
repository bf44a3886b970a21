"""Small DuckDB 2 helpers: results are always read to the end (DuckDB 2 refuses the next query
on a connection that still holds a half-read result)."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl


def sql_text(value: object) -> str:
    """`value` (a string or a path) as an SQL string constant, its quotes doubled: for what
    DuckDB takes only as a literal (a file path in `read_parquet`, a bound it prunes row
    groups by)."""
    return "'" + str(value).replace("'", "''") + "'"


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`con` without DuckDB's progress bar, which it prints on stdout for any query longer than
    two seconds, into `--json` documents and `billrun sql` tables (a per-connection setting)."""
    con.execute("SET enable_progress_bar = false")
    return con


def frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pl.DataFrame:
    """Run a query and return all its rows as a Polars frame."""
    return con.sql(sql, params=params).pl()


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Run a query and return all its rows."""
    return con.execute(sql, params).fetchall()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """Run a query and return the first column of its first row (None if no row)."""
    got = rows(con, sql, params)
    return got[0][0] if got else None

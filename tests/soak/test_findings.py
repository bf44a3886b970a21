"""Failures the soak found, each pinned by a test of its own (issue 23)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from billrun.sql_shell import open_copy
from store.schema import connect
from store.snapshot import analyst_path


def _progress_bar(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]


def test_no_duckdb_progress_bar_on_stdout(tmp_path: Path) -> None:
    """A loaded machine made one query of a load last over two seconds; DuckDB then printed its
    progress bar on stdout, inside `billrun load --json`'s document. The connections billrun
    opens have it off: the run's (read-write and read-only) and the analyst shell's."""
    db = tmp_path / "billrun.duckdb"
    con = connect(db)
    assert _progress_bar(con) is False
    con.close()
    with connect(db, read_only=True) as con:
        assert _progress_bar(con) is False
    analyst_path(db).write_bytes(db.read_bytes())
    con, _ = open_copy(db)
    with con:
        assert _progress_bar(con) is False

"""Change detection and invariants of the commit (store/results.py), on a real DuckDB file:
groups never stored are written without comparing, stored groups are rewritten only when their
rows differ, and the invariants are checked over the groups the run touched."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from store.results import InvariantError, _check_invariants, _replace_changed_groups
from store.schema import connect

COLUMNS = "account_id, period, currency, total, status"


def _db(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "billrun.duckdb")
    con.execute(
        """INSERT INTO invoices (account_id, period, currency, total, status, run_id) VALUES
           ('A1', '2026-01', 'USD', 10.00, 'final', 'run-1'),
           ('A2', '2026-01', 'USD', 20.00, 'draft', 'run-1'),
           ('A3', '2026-01', 'USD', 30.00, 'draft', 'run-1')"""
    )
    return con


def _stage(con: duckdb.DuckDBPyConnection, scope: list[tuple], rows: list[tuple]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _scope (account_id VARCHAR, period VARCHAR, "
                "status VARCHAR)")
    if scope:
        con.executemany("INSERT INTO _scope VALUES (?, ?, ?)", scope)
    con.execute("CREATE OR REPLACE TEMP TABLE _staged (account_id VARCHAR, period VARCHAR, "
                "currency VARCHAR, total DECIMAL(38,4), status VARCHAR)")
    if rows:
        con.executemany("INSERT INTO _staged VALUES (?, ?, ?, ?, ?)", rows)


def _invoices(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT account_id, period, CAST(total AS VARCHAR), status, run_id "
                       "FROM invoices ORDER BY ALL").fetchall()


def test_only_groups_whose_rows_differ_are_rewritten(tmp_path: Path) -> None:
    con = _db(tmp_path)
    _stage(
        con,
        scope=[("A2", "2026-01", "draft"), ("A3", "2026-01", "draft"), ("A4", "2026-01", "draft"),
               ("A1", "2026-02", "draft")],
        rows=[("A2", "2026-01", "USD", "20.00", "draft"),  # the same: keeps run-1
              ("A3", "2026-01", "USD", "31.00", "draft"),  # changed
              ("A4", "2026-01", "USD", "5.00", "draft"),  # never stored
              ("A1", "2026-02", "USD", "7.00", "draft")],  # a new period of a stored account
    )
    # A3 changed, A4 and A1's February are new: three groups.
    assert _replace_changed_groups(con, "invoices", COLUMNS, "_staged", "run-2") == 3
    assert _invoices(con) == [
        ("A1", "2026-01", "10.0000", "final", "run-1"),  # not in scope: untouched
        ("A1", "2026-02", "7.0000", "draft", "run-2"),
        ("A2", "2026-01", "20.0000", "draft", "run-1"),
        ("A3", "2026-01", "31.0000", "draft", "run-2"),
        ("A4", "2026-01", "5.0000", "draft", "run-2"),
    ]


def test_a_stored_group_with_no_new_rows_is_emptied(tmp_path: Path) -> None:
    con = _db(tmp_path)
    _stage(con, scope=[("A3", "2026-01", "draft")], rows=[])
    assert _replace_changed_groups(con, "invoices", COLUMNS, "_staged", "run-2") == 1
    assert [r[0] for r in _invoices(con)] == ["A1", "A2"]


def test_a_first_run_writes_everything_and_a_rerun_nothing(tmp_path: Path) -> None:
    con = connect(tmp_path / "billrun.duckdb")
    rows = [(f"A{i}", "2026-01", "USD", f"{i}.00", "draft") for i in range(50)]
    _stage(con, scope=[(r[0], r[1], "draft") for r in rows], rows=rows)
    assert _replace_changed_groups(con, "invoices", COLUMNS, "_staged", "run-1") == 50
    assert _replace_changed_groups(con, "invoices", COLUMNS, "_staged", "run-2") == 0
    assert {r[4] for r in _invoices(con)} == {"run-1"}


def test_invariants_are_checked_over_the_groups_in_scope(tmp_path: Path) -> None:
    con = _db(tmp_path)
    # A2's invoice says 20.00 but its one line says 19.00: broken, and in scope.
    con.execute("INSERT INTO charges (account_id, period, line_type, amount, currency, run_id) "
                "VALUES ('A2', '2026-01', 'usage', 19.00, 'USD', 'run-1')")
    _stage(con, scope=[("A2", "2026-01", "draft")], rows=[])
    with pytest.raises(InvariantError, match="invoice total differs from the sum of its lines"):
        _check_invariants(con)
    # Out of scope, A2 is not this run's to check; A1 (no lines, total 10.00) is the run's.
    _stage(con, scope=[("A3", "2026-01", "draft")], rows=[])
    with pytest.raises(InvariantError, match="1 row"):
        _check_invariants(con)
    con.execute("UPDATE invoices SET total = 0 WHERE account_id = 'A3'")
    _check_invariants(con)

"""The commit's counter writes and key checks (store/counter_writes.py, store/key_checks.py) on a
real DuckDB file: only changed values are rewritten (unchanged rows keep their run id), a
window's own row follows its latest period, no results table keeps a key index (a database
made with them loses them once, its rows kept), and a repeated key fails the check."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pytest

from store.counter_writes import write_changed_counters
from store.key_checks import repeated_keys, written_key_repeats
from store.results import InvariantError, _check_written_keys
from store.schema import connect

WINDOW = ("A1", "voice", "ROAM", "quantity", "never", date(1970, 1, 1))
DAILY = ("A1", "data", "ALL", "quantity", "period", date(2026, 2, 1))


def _stored(con: duckdb.DuckDBPyConnection) -> None:
    con.executemany(
        "INSERT INTO counter_periods VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*WINDOW, "2026-01", D("300"), "run-1"), (*WINDOW, "2026-02", D("600"), "run-1"),
         (*DAILY, "2026-02", D("5"), "run-1")],
    )
    con.execute("INSERT INTO discount_counters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ["A1", "voice", "ROAM", "quantity", date(1970, 1, 1), D("600"), "never",
                 "2026-02", "run-1"])
    con.execute("INSERT INTO discount_counters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ["A1", "data", "ALL", "quantity", date(2026, 2, 1), D("5"), "period",
                 "2026-02", "run-1"])


def _stage(con: duckdb.DuckDBPyConnection, new: list[tuple], shift: list[tuple]) -> None:
    key = ("account_id VARCHAR, service VARCHAR, destination_group VARCHAR, "
           "threshold_type VARCHAR, reset VARCHAR, window_start DATE")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new_counters ({key}, period VARCHAR, "
                "value DECIMAL(38,6))")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _shift ({key}, period VARCHAR, "
                "delta_units BIGINT)")
    if new:
        con.executemany("INSERT INTO _new_counters VALUES (?, ?, ?, ?, ?, ?, ?, ?)", new)
    if shift:
        con.executemany("INSERT INTO _shift VALUES (?, ?, ?, ?, ?, ?, ?, ?)", shift)


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def _write(con: duckdb.DuckDBPyConnection, run_id: str) -> set[str]:
    touched: set[str] = set()

    def touch(sql: str) -> None:
        touched.update(p for (p,) in con.execute(sql).fetchall() if p is not None)

    write_changed_counters(con, run_id, touch)
    return touched


def test_a_reprocess_rewrites_what_changed_and_rolls_the_later_periods_forward(
    tmp_path: Path,
) -> None:
    con = connect(tmp_path / "billrun.duckdb")
    _stored(con)
    # January recomputed with 100 more minutes (400, was 300): February rolls from 600 to 700.
    _stage(con, new=[(*WINDOW, "2026-01", D("400"))], shift=[(*WINDOW, "2026-01", 100_000_000)])
    assert _write(con, "run-2") == {"2026-01", "2026-02"}
    assert _rows(con, "counter_periods") == [
        (*DAILY, "2026-02", D("5"), "run-1"),  # not the run's: untouched
        (*WINDOW, "2026-01", D("400"), "run-2"),
        (*WINDOW, "2026-02", D("700"), "run-2"),
    ]
    # The window's own row: its latest period's value, 700.
    assert _rows(con, "discount_counters") == [
        ("A1", "data", "ALL", "quantity", date(2026, 2, 1), D("5"), "period", "2026-02",
         "run-1"),
        ("A1", "voice", "ROAM", "quantity", date(1970, 1, 1), D("700"), "never", "2026-02",
         "run-2"),
    ]
    assert written_key_repeats(con) == {"counter_periods": 0, "discount_counters": 0}


def test_unchanged_values_keep_their_run_and_a_new_period_moves_the_window(
    tmp_path: Path,
) -> None:
    con = connect(tmp_path / "billrun.duckdb")
    _stored(con)
    # February as stored (600), March new (650): only March is written, and the window's row
    # moves to March; February's daily window is not the run's and keeps its run.
    _stage(con, new=[(*WINDOW, "2026-02", D("600")), (*WINDOW, "2026-03", D("650"))], shift=[])
    assert _write(con, "run-2") == {"2026-02", "2026-03"}
    assert [(r[6], r[7], r[8]) for r in _rows(con, "counter_periods") if r[1] == "voice"] == [
        ("2026-01", D("300"), "run-1"), ("2026-02", D("600"), "run-1"),
        ("2026-03", D("650"), "run-2"),
    ]
    assert [r[5:] for r in _rows(con, "discount_counters") if r[1] == "voice"] == [
        (D("650"), "never", "2026-03", "run-2")
    ]
    # The same night again: nothing changes, not even a run id.
    before = _rows(con, "counter_periods"), _rows(con, "discount_counters")
    _write(con, "run-3")
    assert (_rows(con, "counter_periods"), _rows(con, "discount_counters")) == before


def test_a_repeated_key_fails_the_commit_check(tmp_path: Path) -> None:
    con = connect(tmp_path / "billrun.duckdb")
    _stored(con)
    _stage(con, new=[(*WINDOW, "2026-02", D("600"))], shift=[])
    _check_written_keys(con)  # one row per key: passes
    con.execute("INSERT INTO counter_periods SELECT * FROM counter_periods "
                "WHERE period = '2026-02' AND service = 'voice'")
    assert repeated_keys(con, "counter_periods", "_new_counters") == 1
    with pytest.raises(InvariantError, match="duplicate counter_periods key: 1 key"):
        _check_written_keys(con)
    # A repeated key the run did not write is an earlier run's (checked by it): not read.
    con.execute("DELETE FROM _new_counters")
    con.execute("INSERT INTO _new_counters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [*DAILY, "2026-02", D("5")])
    _check_written_keys(con)


def test_no_results_table_has_a_key_index_and_old_databases_lose_theirs(
    tmp_path: Path,
) -> None:
    keyed = ("SELECT DISTINCT table_name FROM duckdb_constraints() "
             "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') ORDER BY 1")
    con = connect(tmp_path / "new.duckdb")
    # documents keeps its keys (its numbering check relies on them); the run log and the
    # catalog versions are small.
    assert con.execute(keyed).fetchall() == [("catalog_versions",), ("documents",), ("runs",)]
    con.close()
    # A database made when the tables declared their keys, with rows and a view.
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute("""CREATE TABLE invoices (
            account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, currency VARCHAR NOT NULL,
            total DECIMAL(38,4) NOT NULL, status VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
            invoice_number VARCHAR, issued_on DATE, due_on DATE,
            PRIMARY KEY (account_id, period))""")
        old.execute("""CREATE TABLE finalized_periods (account_id VARCHAR NOT NULL,
            period VARCHAR NOT NULL, PRIMARY KEY (account_id, period))""")
        old.execute("INSERT INTO invoices VALUES ('A2', '2026-01', 'USD', 2.5, 'final', 'r1', "
                    "'INV-1', DATE '2026-02-01', DATE '2026-03-01'), "
                    "('A1', '2026-01', 'USD', 1.5, 'draft', 'r1', NULL, NULL, NULL)")
        old.execute("INSERT INTO finalized_periods VALUES ('A2', '2026-01')")
        old.execute("CREATE VIEW finals AS SELECT * FROM invoices WHERE status = 'final'")
    con = connect(path)
    assert con.execute(keyed).fetchall() == [("catalog_versions",), ("documents",), ("runs",)]
    assert con.execute("SELECT account_id, total FROM invoices").fetchall() == [
        ("A2", D("2.5")), ("A1", D("1.5"))]  # the rows, in their order
    assert con.execute("SELECT account_id FROM finals").fetchall() == [("A2",)]
    assert con.execute("SELECT * FROM finalized_periods").fetchall() == [
        ("A2", "2026-01", None)]
    assert con.execute("SELECT is_nullable FROM information_schema.columns "
                       "WHERE table_name = 'invoices' AND column_name = 'total'"
                       ).fetchall() == [("NO",)]

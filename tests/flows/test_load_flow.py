"""The load flow is a real Prefect flow run: it completes, logs, and fails cleanly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import store
from data.generator import generate
from flows.load import load_flow


def test_the_flow_run_completes_and_returns_the_report(tmp_path: Path) -> None:
    generate(100, tmp_path / "in", seed=11, months=1)
    db = tmp_path / "billrun.duckdb"
    state = load_flow(str(tmp_path / "in"), str(db), return_state=True)
    assert state.is_completed()
    report = state.result()
    assert report.status == "success"
    assert [f.source for f in report.files] == ["accounts.csv", "assignments.csv", "usage.csv"]
    assert report.rows_in == report.rows_out + report.rejected
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT run_id, status FROM runs").fetchall() == [
            (report.run_id, "success")
        ]


def test_a_failing_flow_run_is_failed_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    generate(20, folder, seed=1, months=1)
    db = tmp_path / "billrun.duckdb"
    # A usage file without a usable header fails the load after accounts and assignments were
    # written inside the transaction: they must be rolled back.
    (folder / "usage.csv").write_bytes(b"\xff\xfe not utf-8 \x00\n")
    state = load_flow(str(folder), str(db), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="not UTF-8"):
        state.result()
    con = store.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM accounts").fetchall() == [(0,)]
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    finally:
        con.close()

"""Invariants of the runs on a generated data set with every scenario kind in it (SPEC §5)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow


def test_reprocessing_unchanged_inputs_adds_no_line(tmp_path: Path) -> None:
    generate(80, tmp_path / "in", seed=3)
    db = str(tmp_path / "billrun.duckdb")
    load_flow(str(tmp_path / "in"), db)
    nightly_flow(as_of=date(2026, 2, 1), db=db)
    nightly_flow(as_of=date(2026, 3, 1), db=db)
    with duckdb.connect(db, read_only=True) as con:
        before = con.execute("SELECT * FROM charges ORDER BY ALL").fetchall()
        finals = con.execute("SELECT count(*) FROM invoices WHERE status = 'final'").fetchall()
    assert finals[0][0] > 0
    for period in ("2026-01", "2026-02", "2026-01"):
        summary = reprocess_flow(period=period, db=db)
        assert summary.adjustments == 0, period
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM adjustments").fetchall() == [(0,)]
        assert con.execute("SELECT * FROM charges ORDER BY ALL").fetchall() == before

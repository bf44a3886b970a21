"""Failures the soak found, each pinned by a test of its own (issue 23)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from billrun.sql_shell import open_copy
from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
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


def _one_account(gen: Path, drop: Path, account: str) -> Path:
    """`gen`'s catalog and the rows of one account only, as a drop."""
    drop.mkdir(parents=True)
    (drop / "catalog.yaml").write_text((gen / "catalog.yaml").read_text())
    for name in ("accounts.csv", "assignments.csv", "usage.csv"):
        header, *rows = (gen / name).read_text().splitlines()
        at = header.split(",").index("account_id")
        mine = [r for r in rows if r.split(",")[at] == account]
        (drop / name).write_text("\n".join([header, *mine]) + "\n")
    return drop


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="found by the soak, not fixed yet: a continued draft "
                   "keeps a rollover allowance that a whole recompute drops once the as-of "
                   "reaches the account's closing date (see the report of issue 23)")
def test_a_draft_continued_past_the_closing_date_equals_a_whole_recompute(
    tmp_path: Path,
) -> None:
    """Seed 23's account A00000057 (closed on 2026-01-27, ADD_VOICE100R with a 100-minute
    rollover, 358.1 US minutes in January): the night of 2026-01-27, continued from the draft
    of 2026-01-26, gives a 200-minute discount; the same night recomputed whole, 100."""
    generate(150, tmp_path / "gen", seed=23, months=2, start="2026-01")
    drop = _one_account(tmp_path / "gen", tmp_path / "drop", "A00000057")
    inc, whole = tmp_path / "inc.duckdb", tmp_path / "whole.duckdb"
    for db in (inc, whole):
        load_flow(str(drop), str(db))
        nightly_flow(as_of=date(2026, 1, 26), db=str(db))
    nightly_flow(as_of=date(2026, 1, 27), db=str(inc))
    nightly_flow(as_of=date(2026, 1, 27), db=str(whole), incremental=False)
    sql = ("SELECT quantity, amount FROM charges WHERE account_id = 'A00000057' AND "
           "line_type = 'discount' AND period = '2026-01'")
    with duckdb.connect(str(inc), read_only=True) as a, \
            duckdb.connect(str(whole), read_only=True) as b:
        assert a.execute(sql).fetchall() == b.execute(sql).fetchall()

"""Failures the soak found, each pinned by a test of its own (issue 23)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
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
def test_a_draft_continued_past_the_closing_date_equals_a_whole_recompute(
    tmp_path: Path,
) -> None:
    """Seed 23's account A00000057: the night of 2026-01-27 continued from the draft of
    2026-01-26 gave a 200-minute discount, the same night recomputed whole 100. 200 is right.

    By hand, from SPEC §3, §4 and §7.3. The account (billing day 1, main product MP_PLUS)
    closes on 2026-01-27; ADD_VOICE100R (VDP_US100R: voice/US quantity, [0, 100 %], [100, 0 %],
    rollover 1) is active from 2025-01-18 and ends that day, as every add-on does (§3). Its
    January US minutes, all on 2-26 January at $0.02 a minute: 14.9 + 35.3 + 48.3 + 25.1 +
    25.1 + 26.9 + 41.9 + 0.8 + 9.9 + 11.8 + 30.0 + 36.8 + 34.9 + 10.4 + 6.0 = 358.1.
    - December 2025 has no usage; the add-on wins all of it, so December grants its 100 and
      leaves them unused: a parcel expiring after January (§7.3, "What is left of the
      period's own Q").
    - January: the add-on wins voice/US from the 1st to the 26th. From the 27th the account is
      closed: it has no add-on and no main product either, so MP_PLUS's plan (same counter key,
      no rollover) wins nothing. January's winning entry is VDP_US100R, rollover 1, so the
      carried 100 are used: the free band is Q + C = 100 + 100 = 200 (§7.3).
    - 358.1 counted minutes, 200 of them free: a discount of 200 minutes, 200 x $0.02 =
      -$4.00. The allowance used, min(358.1, 200) = 200, takes December's 100 first, then
      January's own 100: nothing carries on.
    The whole recompute was wrong: it let MP_PLUS's plan win 27-31 January, which made it the
    deciding entry, without rollover, once the as-of reached the closing day (the draft of the
    26th had not seen those days). The continuation had kept the deciding entry of a day limit
    that the next night moved: the deciding entry now comes from the whole period
    (pipeline/usage/entries.py, tests/pipeline/test_rollover.py and test_continuation.py).
    """
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
    for db in (inc, whole):
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute(sql).fetchall() == [(Decimal("200"), Decimal("-4.00"))], db

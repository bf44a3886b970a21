"""The campaign's own checks (tests/soak/campaign.py) must see what they are meant to see: a
check that compares nothing passes every day. The analyst file shows each table as a view over
the Parquet set; the check that it and the set hold the working tables once listed the file's
BASE TABLEs only, found none, and compared nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from store.schema import connect
from store.snapshot import publish_snapshot
from tests.soak.campaign import _published_equal

RUN = ("INSERT INTO runs VALUES ('R1', 'load', NULL, NULL, TIMESTAMP '2026-01-15 01:00:00', "
       "TIMESTAMP '2026-01-15 01:00:05', 'success', 2, 2, NULL)")
ACCOUNTS = ("INSERT INTO accounts VALUES ('A1', 'USD', 'MP', 1, 'active', DATE '2026-01-01', "
            "NULL, DATE '2026-01-01', 'accounts.csv', 2, 'R1', TIMESTAMP '2026-01-15 01:00:01')")


def _published_problems(db: Path, ledger: Counter) -> list[str]:
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{db}' AS w (READ_ONLY)")
        return _published_equal(con, db, ledger)


def test_the_published_check_compares_the_tables_and_sees_a_changed_row(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    with connect(db) as con:
        con.execute(RUN)
        con.execute(ACCOUNTS)
    publish_snapshot(db)
    ledger: Counter = Counter()
    assert _published_problems(db, ledger) == []
    assert ledger["tables compared with the analyst copy and the set"] >= 2  # accounts, runs...
    with duckdb.connect(str(db)) as con:  # the working row changes after its publication
        con.execute("UPDATE accounts SET billing_day = 2")
    assert _published_problems(db, Counter()) == [
        "analyst copy: accounts differs from the working table",
        "Parquet set: accounts differs from the working table",
    ]
    with duckdb.connect(str(db)) as con:  # a second copy of a row: multisets, not sets
        con.execute("UPDATE accounts SET billing_day = 1")
        con.execute(ACCOUNTS)
    assert len(_published_problems(db, Counter())) == 2

"""SPEC §8.1 change rows in the store: versions, the `assignments` and `assignment_changes`
views, `read_changes`, the rejections made at load, and a database made before the column."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import store
from flows.load import load_directory
from pipeline.contracts import PLAN_CHANGE_SCHEMA
from store import usage_state
from store.results import _write_plan_changes
from store.views import VIEWS
from tests.conftest import write_text

CATALOG = (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()
ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on
A1,USD,MP_BASIC,1,active,2025-01-01
A2,USD,MP_BASIC,1,active,2025-01-01
"""
HEADER = "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity"
BASE = "S1,A1,ADD_TV,TV1,2025-03-01,,2025-02-28 10:00:00,"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(tmp_path / "billrun.duckdb")
    yield connection
    connection.close()


class Drops:
    """Numbered drop folders of one test; the first also holds the catalog and accounts."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.root, self.con, self.n = root, con, 0

    def load(self, *rows: str, header: str = f"{HEADER},effective_from") -> store.FileStats:
        self.n += 1
        folder = self.root / f"drop{self.n}"
        if self.n == 1:
            write_text(folder, "catalog.yaml", CATALOG)
            write_text(folder, "accounts.csv", ACCOUNTS)
        write_text(folder, "assignments.csv", "\n".join([header, *rows]) + "\n")
        report = load_directory(self.con, folder)
        return next(f for f in report.files if f.kind == "assignments")


@pytest.fixture
def drops(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> Drops:
    return Drops(tmp_path, con)


def counts(stats: store.FileStats) -> tuple[int, int, int, int]:
    return stats.rows_in, stats.loaded, stats.unchanged, stats.rejected


def current(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """The `assignments` view: what the rules read of each assignment's base version."""
    return store.read_assignments(con).select(
        "assignment_id", "fee_plan_id", "quantity", "start_date", "end_date"
    ).rows()


def versions(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM assignment_versions").fetchall()[0][0]


def test_base_change_corrected_change_then_a_later_end(
    drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    # 1. the base version, in a file without the column: as before
    assert counts(drops.load(BASE, header=HEADER)) == (1, 1, 0, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), None)]
    assert store.read_changes(con).is_empty()
    # 2. a change of quantity from 2025-04-11, delivered with an end date: the change does not
    # touch the base version, but its end date is the assignment's (the latest delivered row)
    assert counts(drops.load("S1,A1,ADD_TV,TV1,,2025-12-31,,3,2025-04-11")) == (1, 1, 0, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), date(2025, 12, 31))]
    assert store.read_changes(con).rows() == [("S1", date(2025, 4, 11), "TV1", 3)]
    # the stored change row holds its base's start and assignment time
    assert con.execute(
        "SELECT start_date, assigned_at FROM assignment_versions WHERE effective_from IS NOT NULL"
    ).fetchall()[0][0] == date(2025, 3, 1)
    # 3. the change corrected (same key): to TV1P, quantity 2, and no end date any more
    assert counts(drops.load("S1,A1,ADD_TV,TV1P,,,,2,2025-04-11")) == (1, 1, 0, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), None)]
    assert store.read_changes(con).rows() == [("S1", date(2025, 4, 11), "TV1P", 2)]
    # 4. the base version again, now with an end date: the base is replaced, the change stays
    assert counts(drops.load("S1,A1,ADD_TV,TV1,2025-03-01,2025-09-30,2025-02-28 10:00:00,,"))\
        == (1, 1, 0, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), date(2025, 9, 30))]
    assert store.read_changes(con).rows() == [("S1", date(2025, 4, 11), "TV1P", 2)]
    assert versions(con) == 4
    # 5. the same base row again changes nothing
    assert counts(drops.load("S1,A1,ADD_TV,TV1,2025-03-01,2025-09-30,2025-02-28 10:00:00,,"))\
        == (1, 1, 1, 0)
    assert versions(con) == 4
    # 6. the corrected change again equals its key's version, but its end date (none) is not
    # the assignment's (2025-09-30): delivered last, it gives the end date, so it is a version
    assert counts(drops.load("S1,A1,ADD_TV,TV1P,,,,2,2025-04-11")) == (1, 1, 0, 0)
    assert versions(con) == 5
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), None)]
    # ... and then it is unchanged
    assert counts(drops.load("S1,A1,ADD_TV,TV1P,,,,2,2025-04-11")) == (1, 1, 1, 0)
    assert con.execute(
        "SELECT assignment_id, effective_from, quantity, end_date, line FROM assignment_changes"
    ).fetchall() == [("S1", date(2025, 4, 11), 2, None, 2)]


def test_within_one_file_the_last_line_gives_the_end_date(
    drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    drops.load(BASE)
    # the change (line 2) ends the assignment; the base row after it (line 3) equals the stored
    # base version but, being the file's last line of S1, takes the end date away again
    stats = drops.load("S1,A1,ADD_TV,TV1,,2025-06-30,,2,2025-05-01", BASE)
    assert counts(stats) == (2, 2, 0, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), None)]
    # the other way round, the change's end date holds
    stats = drops.load(BASE, "S1,A1,ADD_TV,TV1,,2025-06-30,,2,2025-05-01")
    assert counts(stats) == (2, 2, 1, 0)
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), date(2025, 6, 30))]
    # loading the same file again changes nothing, either way round
    stored = versions(con)
    assert counts(drops.load(BASE, "S1,A1,ADD_TV,TV1,,2025-06-30,,2,2025-05-01")) == (2, 2, 2, 0)
    assert versions(con) == stored
    drops.load("S1,A1,ADD_TV,TV1,,2025-06-30,,2,2025-05-01", BASE)
    stored = versions(con)
    assert counts(drops.load("S1,A1,ADD_TV,TV1,,2025-06-30,,2,2025-05-01", BASE))\
        == (2, 2, 2, 0)
    assert versions(con) == stored
    assert current(con) == [("S1", "TV1", 1, date(2025, 3, 1), None)]


def test_change_rows_that_do_not_fit_their_base_are_rejected_at_load(
    drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    stats = drops.load(
        BASE,                                          # 2: S1's base
        "S9,A1,ADD_TV,TV1,,,,,2025-04-01",             # 3: no base anywhere
        "S1,A2,ADD_TV,TV1,,,,,2025-04-01",             # 4: another account
        "S1,A1,ADD_SMS,S1E,,,,,2025-04-02",            # 5: another add-on
        "S1,A1,ADD_TV,TV1,,,,2,2025-02-28",            # 6: before start_date
        "S1,A1,ADD_TV,TV1,,2025-02-01,,2,2025-03-02",  # 7: its end before the base's start
        "S2,A1,ADD_TV,TV1,,,,2,2025-04-01",            # 8: its base comes later in the file
        "S2,A1,ADD_TV,TV1,2025-03-15,,2025-03-01 09:00:00,,",  # 9: S2's base
        "S1,A1,ADD_TV,TV1,,,,3,2025-03-01",            # 10: a change on start_date is fine
    )
    assert counts(stats) == (9, 4, 0, 5)
    assert store.read_rejected(con).select("line", "reason", "raw").rows() == [
        (3, "effective_from: a change of assignment 'S9', which has no base version (a row "
            "without effective_from) stored or in this load", "S9,A1,ADD_TV,TV1,,,,,2025-04-01"),
        (4, "account_id: 'A2' differs from the base version's 'A1'",
         "S1,A2,ADD_TV,TV1,,,,,2025-04-01"),
        (5, "addon_id: 'ADD_SMS' differs from the base version's 'ADD_TV'",
         "S1,A1,ADD_SMS,S1E,,,,,2025-04-02"),
        (6, "effective_from: 2025-02-28 is before the base version's start_date 2025-03-01",
         "S1,A1,ADD_TV,TV1,,,,2,2025-02-28"),
        (7, "end_date: end before start (2025-02-01 < 2025-03-01, the base version's "
            "start_date)", "S1,A1,ADD_TV,TV1,,2025-02-01,,2,2025-03-02"),
    ]
    assert store.read_changes(con).rows() == [
        ("S1", date(2025, 3, 1), "TV1", 3), ("S2", date(2025, 4, 1), "TV1", 2),
    ]
    # a later load checks against the stored base; the rejected rows are not stored twice
    stats = drops.load("S9,A1,ADD_TV,TV1,,,,,2025-04-01", "S2,A1,ADD_TV,TV1,,,,5,2025-03-14")
    assert counts(stats) == (2, 0, 0, 2)
    rejected = store.read_rejected(con)
    assert rejected.height == 7
    assert rejected.filter(pl.col("line") == 3)["reason"].to_list() == [
        "effective_from: 2025-03-14 is before the base version's start_date 2025-03-15",
        "effective_from: a change of assignment 'S9', which has no base version (a row "
        "without effective_from) stored or in this load",
    ]


def test_a_parquet_file_with_a_typed_effective_from(
    tmp_path: Path, drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    drops.load(BASE, header=HEADER)
    folder = tmp_path / "parquet"
    folder.mkdir()
    table = pa.table({
        "assignment_id": ["S1", "S1"], "account_id": ["A1", "A1"], "addon_id": ["ADD_TV"] * 2,
        "fee_plan_id": ["TV1", "TV1P"], "start_date": [date(2025, 3, 1), None],
        "end_date": pa.array([None, None], pa.date32()),
        "assigned_at": ["2025-02-28 10:00:00", None], "quantity": pa.array([1, 4], pa.int64()),
        "effective_from": pa.array([None, date(2025, 5, 1)], pa.date32()),
    })
    pq.write_table(table, folder / "assignments.parquet")
    report = load_directory(con, folder)
    assert counts(report.files[0]) == (2, 2, 1, 0)
    assert store.read_changes(con).rows() == [("S1", date(2025, 5, 1), "TV1P", 4)]


def test_a_database_made_before_the_column_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    old.execute(  # the table as it was created before SPEC §8.1
        """CREATE TABLE assignment_versions (
            assignment_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
            addon_id VARCHAR NOT NULL, fee_plan_id VARCHAR, start_date DATE NOT NULL,
            end_date DATE, assigned_at TIMESTAMP NOT NULL, quantity INTEGER NOT NULL,
            load_seq BIGINT NOT NULL, source VARCHAR NOT NULL, line BIGINT NOT NULL,
            run_id VARCHAR NOT NULL, loaded_at TIMESTAMP NOT NULL)"""
    )
    old.execute(
        "INSERT INTO assignment_versions VALUES ('S1', 'A1', 'ADD_TV', 'TV1', '2025-03-01', "
        "NULL, '2025-02-28 10:00:00', 2, 1, 'assignments.csv', 2, 'load-1', '2025-03-01')"
    )
    old.close()
    con = store.connect(path)
    try:
        assert current(con) == [("S1", "TV1", 2, date(2025, 3, 1), None)]
        assert store.read_changes(con).schema == pl.Schema(
            {"assignment_id": pl.String, "effective_from": pl.Date, "fee_plan_id": pl.String,
             "quantity": pl.Int64}
        )
    finally:
        con.close()


def test_a_change_row_makes_only_its_account_recompute(
    drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    """The incremental nightly continues a draft only while the account's inputs hash the same
    (store/usage_state.py): a new change row is such an input."""
    drops.load(BASE, "S2,A2,ADD_TV,TV1,2025-03-01,,2025-02-28 10:00:00,2,")
    con.execute("CREATE TEMP TABLE _groups AS SELECT * FROM (VALUES ('A1', '2025-04'), "
                "('A2', '2025-04')) g(account_id, period)")
    before = usage_state.inputs_prints(con, "_groups")
    drops.load("S1,A1,ADD_TV,TV1,,,,3,2025-04-11")
    after = usage_state.inputs_prints(con, "_groups")
    assert after[("A1", "2025-04")] != before[("A1", "2025-04")]
    assert after[("A2", "2025-04")] == before[("A2", "2025-04")]
    # a correction of the change is a new input again; its unchanged reload is not
    drops.load("S1,A1,ADD_TV,TV1,,,,4,2025-04-11")
    corrected = usage_state.inputs_prints(con, "_groups")
    assert corrected[("A1", "2025-04")] not in (before[("A1", "2025-04")],
                                                after[("A1", "2025-04")])
    drops.load("S1,A1,ADD_TV,TV1,,,,4,2025-04-11")
    assert usage_state.inputs_prints(con, "_groups") == corrected


def _verdicts(con: duckdb.DuckDBPyConnection, run_id: str, *rows: tuple) -> int:
    """Write verdicts as a run's commit does (store.results), from PLAN_CHANGE_SCHEMA rows."""
    con.register("_rows", pl.DataFrame(list(rows), schema=PLAN_CHANGE_SCHEMA, orient="row"))
    con.execute("CREATE OR REPLACE TEMP TABLE _new_plan_changes AS SELECT * FROM _rows")
    con.unregister("_rows")
    return _write_plan_changes(con, run_id)


def test_assignment_history_shows_each_version_with_its_verdict(
    drops: Drops, con: duckdb.DuckDBPyConnection
) -> None:
    drops.load(BASE, "S1,A1,ADD_TV,TV1,,,,3,2025-04-11", "S1,A1,ADD_TV,TV1E,,,,,2025-05-01")
    con.execute(f"CREATE VIEW assignment_history AS {VIEWS['assignment_history']}")

    def history() -> list[tuple]:
        return con.execute("SELECT * FROM assignment_history").fetchall()

    base = ("S1", "A1", "ADD_TV", None, date(2025, 3, 1), "TV1", 1, "base", None)
    assert history() == [  # loaded, not billed yet
        base,
        ("S1", "A1", "ADD_TV", date(2025, 4, 11), None, "TV1", 3, "not in effect",
         "not billed yet"),
        ("S1", "A1", "ADD_TV", date(2025, 5, 1), None, "TV1E", 1, "not in effect",
         "not billed yet"),
    ]
    in_effect = ("S1", "A1", date(2025, 4, 11), date(2025, 4, 11), "TV1", 3, "in effect",
                 "immediate: on its effective_from")
    refused = ("S1", "A1", date(2025, 5, 1), None, "TV1E", 1, "refused",
               "fee plan TV1E is in EUR, the account in USD")
    assert _verdicts(con, "run-1", in_effect, refused) == 2
    assert _verdicts(con, "run-2", in_effect, refused) == 0  # the same verdicts: no rewrite
    assert history() == [
        base,
        ("S1", "A1", "ADD_TV", date(2025, 4, 11), date(2025, 4, 11), "TV1", 3, "in effect",
         "immediate: on its effective_from"),
        ("S1", "A1", "ADD_TV", date(2025, 5, 1), None, "TV1E", 1, "refused",
         "fee plan TV1E is in EUR, the account in USD"),
    ]
    # a correction of the first change: its verdict was on the version before
    drops.load("S1,A1,ADD_TV,TV1,,,,4,2025-04-11")
    assert history()[1] == ("S1", "A1", "ADD_TV", date(2025, 4, 11), None, "TV1", 4,
                            "not in effect", "not billed yet")
    # the next run's verdict replaces the old one
    assert _verdicts(con, "run-3", (*in_effect[:5], 4, *in_effect[6:])) == 1
    assert con.execute(
        "SELECT effective_from, quantity, run_id FROM plan_change_verdicts ORDER BY ALL"
    ).fetchall() == [(date(2025, 4, 11), 4, "run-3"), (date(2025, 5, 1), 1, "run-1")]
    assert history()[1][4:8] == (date(2025, 4, 11), "TV1", 4, "in effect")

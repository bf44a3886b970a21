"""SPEC §8.1 change rows on their way to `bill` and back: staged by shard with the accounts they
belong to (as the locks are), read by each unit and by `explain`, and shown in the analyst
copy's `assignment_history` after a nightly. Real files, a real DuckDB file, a real flow (the
second test only)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

import store
from billrun.explain import _account_inputs
from flows.load import load_directory
from flows.nightly import nightly_flow
from flows.units import UnitSpec, _inputs
from pipeline.contracts import VERSION_STATUSES
from store import staging
from store.parquet_set import parquet_pointer
from store.snapshot import analyst_path
from tests.flows.conftest import ACCOUNTS, CATALOG, write_drop

ASSIGNMENTS = (
    "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity,"
    "effective_from\n"
) + """AS_TV,A1,ADD_TV,TV1,2026-01-11,,2026-01-10 09:00:00,1,
AS_V100,A1,ADD_VOICE100,V1,2026-01-01,,2025-12-30 10:00:00,1,
AS_TV,A1,ADD_TV,TV1,,,,2,2026-02-01
B_TV,B1,ADD_TV,TV1,2026-01-01,,2025-12-30 10:00:00,1,
B_TV,B1,ADD_TV,TV1,,,,3,2026-01-15
B_TV,B1,ADD_TV,TV1,,,,1,2026-03-01
"""
MORE_ACCOUNTS = ACCOUNTS + "B1,USD,MP_BASIC,1,active,2026-01-01,,\n"


def _loaded(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """A database with the drop above loaded, and its changes."""
    db = tmp_path / "billrun.duckdb"
    drop = write_drop(tmp_path / "drop", catalog=CATALOG, accounts=MORE_ACCOUNTS,
                      assignments=ASSIGNMENTS)
    con = store.connect(db)
    try:
        load_directory(con, drop)
        changes = store.read_changes(con)
    finally:
        con.close()
    assert changes.rows() == [
        ("AS_TV", date(2026, 2, 1), "TV1", 2),
        ("B_TV", date(2026, 1, 15), "TV1", 3), ("B_TV", date(2026, 3, 1), "TV1", 1),
    ]
    return db, changes


def test_each_unit_reads_the_changes_of_its_shard(tmp_path: Path) -> None:
    db, changes = _loaded(tmp_path)
    con = store.connect(db)
    try:
        # the run's staging: each unit reads the changes of its shard's accounts
        stage, shards = staging.Stage(str(tmp_path / "staging"), "run-1"), 2
        staging.write_text(stage, staging.CATALOG_FILE, store.read_catalog_text(con) or "")
        shard, by_account = staging.shard_sql(shards), staging.shard_sql(shards, "a.account_id")
        staging.export(con, stage, "accounts", staging.ACCOUNTS_SQL.format(shard=shard), shards)
        staging.export(con, stage, "assignments", staging.ASSIGNMENTS_SQL.format(shard=shard),
                       shards)
        for name, sql in (("locks", staging.LOCKS_SQL), ("changes", staging.CHANGES_SQL)):
            staging.export(con, stage, name, sql.format(shard=by_account), shards)
    finally:
        con.close()
    units = [_inputs(UnitSpec(stage.root, stage.run_id, s, None, None, "replace", None))
             for s in range(shards)]
    for inputs in units:
        assert inputs.changes.schema == changes.schema
        assert inputs.changes.join(inputs.assignments, on="assignment_id", how="anti").is_empty()
    assert pl.concat([u.changes for u in units]).sort("assignment_id", "effective_from")\
        .equals(changes)


@pytest.mark.slow
def test_explain_and_the_analyst_copy_after_a_nightly(tmp_path: Path) -> None:
    db, changes = _loaded(tmp_path)
    nightly_flow(as_of=date(2026, 2, 10), db=str(db), shards=2)
    with duckdb.connect(str(db), read_only=True) as con:
        explained = _account_inputs(con, "B1", "2026-01", with_usage=False)
        assert explained is not None
        assert explained.changes.equals(changes.filter(pl.col("assignment_id") == "B_TV"))
    with duckdb.connect(str(analyst_path(db)), read_only=True) as copy:
        history = copy.execute(
            "SELECT assignment_id, effective_from, takes_effect_on, quantity, status "
            "FROM assignment_history WHERE assignment_id = 'B_TV'"
        ).fetchall()
    # the base version, then each change with the verdict of the run (whatever the rules
    # settled: that is theirs to test)
    assert history[0] == ("B_TV", None, date(2026, 1, 1), 1, "base")
    assert [row[1] for row in history[1:]] == [date(2026, 1, 15), date(2026, 3, 1)]
    assert {row[4] for row in history[1:]} <= set(VERSION_STATUSES)
    parquet = parquet_pointer(db)
    assert pl.read_parquet(parquet / "assignment_history.parquet").height == 6  # 3 bases, 3 changes
    assert pl.read_parquet(parquet / "plan_change_verdicts.parquet").columns == [
        "assignment_id", "account_id", "effective_from", "takes_effect_on", "fee_plan_id",
        "quantity", "status", "reason", "run_id",
    ]

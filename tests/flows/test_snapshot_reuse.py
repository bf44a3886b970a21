"""The analyst copy and the Parquet set reuse what did not change (store/snapshot.py,
store/parquet_set.py): a run copies again only the tables whose content changed, and the copy it
publishes is the same as a copy made from nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from flows.load import load_flow
from flows.nightly import nightly_flow
from store.parquet_set import parquet_pointer
from store.results_schema import STATE_SCHEMA
from store.snapshot import FINGERPRINTS_SCHEMA, analyst_path, publish_snapshot, write_analyst_copy

BIN = Path(sys.executable).parent
FEB_USAGE = (
    "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
    "E4,A1,voice,US,2026-02-03 12:00:00,20,2.00\n"
)


def tables_of(path: Path) -> dict[str, list[tuple]]:
    """Every table and view of a DuckDB file (the fingerprints aside), rows sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name NOT IN (?, ?) UNION ALL "
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1",
            [FINGERPRINTS_SCHEMA, STATE_SCHEMA],
        ).fetchall()]
        return {n: con.execute(f'SELECT * FROM "{n}" ORDER BY ALL').fetchall() for n in names}


@pytest.fixture(scope="module")
def billed(module_scenario: dict[str, Path]) -> Path:
    db = module_scenario["tmp"] / "billrun.duckdb"
    load_flow(module_scenario["drop"], db)
    nightly_flow(date(2026, 2, 1), db=str(db))
    return db


def test_a_new_copy_rewrites_only_the_changed_tables_and_equals_a_fresh_copy(
    billed: Path, tmp_path: Path
) -> None:
    analyst = analyst_path(billed)
    unchanged = write_analyst_copy(billed, tmp_path / "same.duckdb", analyst)
    assert unchanged.copied == ()  # nothing changed since the nightly published its copy
    assert tables_of(tmp_path / "same.duckdb") == tables_of(analyst)

    drop = tmp_path / "feb"
    drop.mkdir()
    (drop / "usage.csv").write_text(FEB_USAGE)
    nightly_flow(date(2026, 2, 10), db=str(billed), input_dir=str(drop))
    after = write_analyst_copy(billed, tmp_path / "reused.duckdb", analyst_path(billed))
    fresh = write_analyst_copy(billed, tmp_path / "fresh.duckdb")
    assert after.copied == ()  # the nightly's own copy already holds the new usage
    assert set(fresh.copied) >= {"usage", "charges", "accounts", "catalog_versions"}
    assert tables_of(tmp_path / "reused.duckdb") == tables_of(tmp_path / "fresh.duckdb")
    assert tables_of(analyst_path(billed)) == tables_of(tmp_path / "fresh.duckdb")


def test_new_usage_is_appended_to_the_copy_and_a_changed_row_copies_the_table_whole(
    billed: Path, tmp_path: Path
) -> None:
    before = write_analyst_copy(billed, tmp_path / "before.duckdb")
    with duckdb.connect(str(billed)) as con:  # a new event, as a new load would store it
        con.execute("INSERT INTO usage BY NAME SELECT 'E9' AS event_id, "
                    "* EXCLUDE (event_id, run_id), 'load-later' AS run_id FROM usage LIMIT 1")
    after = write_analyst_copy(billed, tmp_path / "after.duckdb", tmp_path / "before.duckdb")
    assert (after.copied, after.appended) == ((), ("usage",))
    assert after.prints["usage"] != before.prints["usage"]
    assert after.prints["catalog_versions"] == before.prints["catalog_versions"]
    write_analyst_copy(billed, tmp_path / "fresh.duckdb")
    assert tables_of(tmp_path / "after.duckdb") == tables_of(tmp_path / "fresh.duckdb")

    # A row changed under an old run id cannot be appended: the fingerprint tells, and the
    # table is copied whole.
    with duckdb.connect(str(billed)) as con:
        con.execute("UPDATE usage SET quantity = quantity + 1 WHERE event_id = 'E1'")
    again = write_analyst_copy(billed, tmp_path / "again.duckdb", tmp_path / "after.duckdb")
    assert (again.copied, again.appended) == (("usage",), ())
    with duckdb.connect(str(tmp_path / "again.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage WHERE event_id = 'E9'").fetchone() == (1,)
        assert con.execute("SELECT quantity FROM usage WHERE event_id = 'E1'").fetchone() == (
            con.execute("SELECT 51::DECIMAL(18,6)").fetchone())
    with duckdb.connect(str(billed)) as con:  # put the shared database back as it was
        con.execute("UPDATE usage SET quantity = quantity - 1 WHERE event_id = 'E1'")
        con.execute("DELETE FROM usage WHERE event_id = 'E9'")


def test_unchanged_parquet_files_are_shared_and_the_cli_opens_the_updated_copy(
    billed: Path,
) -> None:
    pointer = parquet_pointer(billed)
    first = pointer.resolve()
    publish_snapshot(billed, "republished")
    second = pointer.resolve()
    assert second != first
    # Same content, so the set shares the file's inode with the set it replaced...
    assert (second / "rejected_rows.parquet").stat().st_ino == (
        first / "rejected_rows.parquet").stat().st_ino
    # ...and views are always written anew.
    assert (second / "available_addons.parquet").stat().st_ino != (
        first / "available_addons.parquet").stat().st_ino
    shell = subprocess.run(
        [str(BIN / "duckdb"), "-readonly", "-csv", str(analyst_path(billed)), "-c",
         "SELECT count(*) AS n FROM invoices"],
        capture_output=True, text=True, timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["n", "2"]  # A1's January and February


def test_groups_a_later_run_rewrote_replace_theirs_and_a_removed_group_copies_the_table(
    billed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "own.duckdb"  # the module's database stays as it is
    shutil.copyfile(billed, db)
    before = write_analyst_copy(db, tmp_path / "before.duckdb")
    with duckdb.connect(str(db)) as con:  # one invoice's lines rewritten, as a later run does
        account, period = con.execute(
            "SELECT account_id, period FROM charges ORDER BY ALL LIMIT 1").fetchone()
        con.execute("UPDATE charges SET description = description || ' (again)', "
                    "run_id = 'nightly-later' WHERE account_id = ? AND period = ?",
                    [account, period])
    after = write_analyst_copy(db, tmp_path / "after.duckdb", tmp_path / "before.duckdb")
    assert (after.copied, after.patched) == ((), ("charges",))
    write_analyst_copy(db, tmp_path / "fresh.duckdb")
    assert tables_of(tmp_path / "after.duckdb") == tables_of(tmp_path / "fresh.duckdb")
    assert before.prints["charges"] != after.prints["charges"]

    # A group no longer computed leaves no row of a newer run to tell: the fingerprint
    # differs, and the table is copied whole.
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM charges WHERE account_id = ? AND period = ?", [account, period])
    again = write_analyst_copy(db, tmp_path / "again.duckdb", tmp_path / "after.duckdb")
    assert (again.copied, again.patched) == (("charges",), ())
    write_analyst_copy(db, tmp_path / "fresh2.duckdb")
    assert tables_of(tmp_path / "again.duckdb") == tables_of(tmp_path / "fresh2.duckdb")

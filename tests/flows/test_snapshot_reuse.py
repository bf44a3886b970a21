"""The Parquet set reuses what did not change (store/parquet_set.py): a publication writes again
only the partitions, tables and views whose content changed, hard-links the rest from the set
before, and the set it publishes equals one published from nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from flows.load import load_flow
from flows.nightly import nightly_flow
from store.parquet_set import MANIFEST, parquet_pointer
from store.snapshot import analyst_path, publish_snapshot

BIN = Path(sys.executable).parent


def tables_of(path: Path) -> dict[str, list[tuple]]:
    """Every table and view of a DuckDB file's main schema, rows sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY 1").fetchall()]
        return {n: con.execute(f'SELECT * FROM "{n}" ORDER BY ALL').fetchall() for n in names}


def written(db: Path) -> dict[str, list[str]]:
    """What the set in place wrote anew: `relation -> partitions` ("" for a whole file), read
    from the files' link counts (a file linked from the set before has two names)."""
    folder = parquet_pointer(db).resolve()
    relations = json.loads((folder / MANIFEST).read_text())["relations"]
    out: dict[str, list[str]] = {}
    for name, rel in relations.items():
        if rel["label"] is None:
            fresh = ["" for f in rel["files"] if (folder / f).stat().st_nlink == 1]
        else:
            fresh = [value for value, part in rel["parts"].items()
                     if any((folder / f).stat().st_nlink == 1 for f in part["files"])]
        if fresh:
            out[name] = fresh
    return out


@pytest.fixture(scope="module")
def billed(module_scenario: dict[str, Path]) -> Path:
    db = module_scenario["tmp"] / "billrun.duckdb"
    load_flow(module_scenario["drop"], db)
    nightly_flow(date(2026, 2, 1), db=str(db))
    return db


@pytest.fixture
def own(billed: Path, tmp_path: Path) -> Path:
    """A copy of the billed database, published once from nothing."""
    db = tmp_path / "billrun.duckdb"
    shutil.copyfile(billed, db)
    publish_snapshot(db, "first")
    return db


# Views that read the clock (`available_addons`: the as-of date, or today) are written by every
# publication; so is `late_usage`, which reads `runs`.
ALWAYS = {"available_addons"}


def test_a_publication_with_nothing_changed_writes_only_the_views_that_read_the_clock(
    own: Path, tmp_path: Path
) -> None:
    publish_snapshot(own, "again")
    assert set(written(own)) == ALWAYS
    again = tables_of(analyst_path(own))
    fresh = tmp_path / "fresh" / "billrun.duckdb"
    fresh.parent.mkdir()
    shutil.copyfile(own, fresh)
    publish_snapshot(fresh, "fresh")
    assert again == tables_of(analyst_path(fresh)) == tables_of(own)


def test_a_new_event_writes_its_month_and_a_removed_row_its_period(own: Path) -> None:
    with duckdb.connect(str(own)) as con:  # a new January event, as a later load stores it
        con.execute("INSERT INTO usage BY NAME SELECT 'E9' AS event_id, * EXCLUDE (event_id, "
                    "run_id), 'load-later' AS run_id FROM usage WHERE event_id = 'E1'")
        con.execute("INSERT INTO runs BY NAME SELECT 'load-later' AS run_id, * EXCLUDE (run_id) "
                    "FROM runs LIMIT 1")
    publish_snapshot(own, "with-e9")
    # The usage of January, the run log, and what reads them (late_usage reads both).
    assert written(own) == {"usage": ["2026-01"], "runs": [""], "late_usage": [""],
                            **{v: [""] for v in ALWAYS}}
    assert tables_of(analyst_path(own)) == tables_of(own)

    # Rows removed without a new run's row to tell: the partition's count differs.
    with duckdb.connect(str(own)) as con:
        con.execute("DELETE FROM decisions WHERE period = '2026-02'")
    publish_snapshot(own, "fewer-decisions")
    # The table that changed writes the period again, and so do the tables a run numbers in
    # place (invoices, adjustments); the others' rows did not change: their files are linked.
    changed = written(own)
    assert "decisions" not in changed  # no row of it is left: no partition to write
    assert not (parquet_pointer(own) / "decisions" / "period=2026-02").exists()
    assert "charges" not in changed and changed["invoices"] == ["2026-02"]
    assert "2026-01" not in changed.get("invoice_summary", [])
    assert tables_of(analyst_path(own)) == tables_of(own)


def test_a_group_a_later_run_rewrote_writes_its_period_only(own: Path) -> None:
    with duckdb.connect(str(own)) as con:  # one invoice's lines rewritten, as a later run does
        con.execute("UPDATE charges SET description = description || ' (again)', "
                    "run_id = 'nightly-later' WHERE account_id = 'A1' AND period = '2026-01'")
        con.execute("INSERT INTO runs BY NAME SELECT 'nightly-later' AS run_id, "
                    "* EXCLUDE (run_id) FROM runs LIMIT 1")
    publish_snapshot(own, "later")
    changed = written(own)
    assert changed["charges"] == ["2026-01"]
    assert changed["invoices"] == ["2026-01"]  # numbered in place: every dirty period
    assert "2026-02" not in changed["charges"]
    assert changed["revenue_by_addon"] == ["2026-01"]  # a period view: that period only
    assert tables_of(analyst_path(own)) == tables_of(own)


def test_unchanged_files_are_shared_and_the_cli_opens_the_updated_file(own: Path) -> None:
    pointer = parquet_pointer(own)
    first = pointer.resolve()
    publish_snapshot(own, "republished")
    second = pointer.resolve()
    assert second != first
    # Same content, so the set shares the file's inode with the set it replaced...
    assert (second / "rejected_rows.parquet").stat().st_ino == (
        first / "rejected_rows.parquet").stat().st_ino
    assert (second / "charges/period=2026-01/part_0.parquet").stat().st_ino == (
        first / "charges/period=2026-01/part_0.parquet").stat().st_ino
    # ...and a view that reads the clock is written anew.
    assert (second / "available_addons.parquet").stat().st_ino != (
        first / "available_addons.parquet").stat().st_ino
    shell = subprocess.run(
        [str(BIN / "duckdb"), "-readonly", "-csv", str(analyst_path(own)), "-c",
         "SELECT count(*) AS n FROM invoices"],
        capture_output=True, text=True, timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["n", "2"]  # A1's January and February

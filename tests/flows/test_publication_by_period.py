"""Publication by period (issue 24): the Parquet set is split by period (the usage by month), a
run writes again only the partitions it changed and hard-links the others from the set before,
and the analyst file is a few views over its set's files, swapped in with it by one rename
(store/parquet_set.py, store/snapshot.py; docs/RUNS.md, "What is published")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow
from store.parquet_set import MANIFEST, parquet_pointer, relation_files, sets_folder
from store.snapshot import analyst_path, publish_snapshot
from tests.flows.conftest import copy_database, write_drop

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
USAGE_HEADER = "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
FEB_USAGE = USAGE_HEADER + "E4,A1,voice,US,2026-02-03 12:00:00,20,2.00\n"
# SPEC §6 (and §7.4, §8.5, §9): what analysts read, by name.
SPEC_RELATIONS = ("invoices", "charges", "adjustments", "decisions", "discount_counters",
                  "rejected_rows", "available_addons", "runs", "quota_rollovers",
                  "assignment_history", "documents")


@pytest.fixture(scope="module")
def billed(module_scenario: dict[str, Path]) -> Path:
    """The hand-made scenario (tests/flows/conftest.py) loaded and billed as of 2026-02-01:
    January final, February a draft."""
    db = module_scenario["tmp"] / "billed" / "billrun.duckdb"
    db.parent.mkdir()
    load_flow(str(module_scenario["drop"]), str(db))
    nightly_flow(date(2026, 2, 1), db=str(db))
    return db


def relations(path: Path) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """Every table and view of the main schema of a DuckDB file: `(columns with their types,
    rows sorted)`."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY 1").fetchall()]
        return {n: ([tuple(c[:2]) for c in con.execute(f'DESCRIBE "{n}"').fetchall()],
                    con.execute(f'SELECT * FROM "{n}" ORDER BY ALL').fetchall()) for n in names}


def set_relations(db: Path) -> dict[str, list[tuple]]:
    """Every table and view of the Parquet set in place, read from its files, rows sorted."""
    folder = parquet_pointer(db).resolve()
    names = json.loads((folder / MANIFEST).read_text())["relations"]
    with duckdb.connect() as con:
        return {n: con.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = false) ORDER BY ALL",
            [[str(f) for f in relation_files(folder, n)]]).fetchall() for n in names}


def assert_published(db: Path) -> None:
    """The analyst file has every table and view of the working database, with the same columns
    (names and types) and rows; the Parquet set has the same rows."""
    working = relations(db)
    assert relations(analyst_path(db)) == working
    assert set_relations(db) == {n: rows for n, (_, rows) in working.items()}


def test_a_night_that_changes_one_period_rewrites_only_its_partitions(
    billed: Path, tmp_path: Path
) -> None:
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    before = parquet_pointer(db).resolve()
    drop = write_drop(tmp_path / "feb", usage=FEB_USAGE)
    nightly_flow(date(2026, 2, 10), db=str(db), input_dir=str(drop))  # only February changes
    after = parquet_pointer(db).resolve()
    assert after != before and before.is_dir()  # the previous set is kept

    def inode(folder: Path, path: str) -> int:
        return (folder / path).stat().st_ino

    # January (final since Feb 1) is untouched: its partitions are the previous set's files.
    for table in ("charges", "invoices", "decisions", "discount_counters", "documents",
                  "finalized_periods"):
        for january in (before / table / "period=2026-01").iterdir():
            linked = f"{table}/period=2026-01/{january.name}"
            assert inode(after, linked) == inode(before, linked), linked
            assert (after / linked).stat().st_nlink >= 2
    # The usage: one file per load and month; the events published before are not written
    # again, the night's load adds its own file (its month, February, is new).
    january = sorted(p.name for p in (before / "usage/month=2026-01").iterdir())
    assert january and sorted(p.name for p in (after / "usage/month=2026-01").iterdir()) == january
    for name in january:
        assert inode(after, f"usage/month=2026-01/{name}") == inode(
            before, f"usage/month=2026-01/{name}")
    # February's draft was recomputed with the Feb 3 call: written anew.
    for table in ("charges", "invoices"):
        feb = f"{table}/period=2026-02/part_0.parquet"
        assert inode(after, feb) != inode(before, feb), feb
    # Its first voice counter window of February came with that call.
    assert not (before / "discount_counters/period=2026-02").exists()
    assert (after / "discount_counters/period=2026-02/part_0.parquet").exists()
    with duckdb.connect(str(db), read_only=True) as con:
        (load,) = con.execute("SELECT run_id FROM usage WHERE event_id = 'E4'").fetchone()
    assert [p.name for p in (after / "usage/month=2026-02").iterdir()] == [f"{load}_0.parquet"]
    assert not (before / "usage/month=2026-02").exists()  # the event came with this night
    # Whole files: the catalog did not change, the run log did.
    assert inode(after, "catalog_addons.parquet") == inode(before, "catalog_addons.parquet")
    assert inode(after, "runs.parquet") != inode(before, "runs.parquet")
    # A period view: January's revenue is linked, February's computed again.
    assert inode(after, "revenue_by_addon/period=2026-01/part_0.parquet") == inode(
        before, "revenue_by_addon/period=2026-01/part_0.parquet")
    assert_published(db)


def test_the_analyst_file_holds_every_table_and_view_with_the_working_rows(
    billed: Path,
) -> None:
    published = relations(analyst_path(billed))
    assert set(SPEC_RELATIONS) <= set(published)
    assert_published(billed)
    # It holds views only, no rows: a few KB, whatever the history.
    assert analyst_path(billed).is_symlink()
    assert analyst_path(billed).resolve().parent == parquet_pointer(billed).resolve()
    with duckdb.connect(str(analyst_path(billed)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
    # January: TV 30.00 x 21/31 = 20.32, activation 10.00, voice 5.00, 120 minutes at 0.10 with
    # 100 free = 2.00: 37.32; February, a draft: 30.00 + 5.00.
    assert published["invoice_summary"][1] == [
        ("2026-01", "final", "USD", 1, Decimal("37.32")),
        ("2026-02", "draft", "USD", 1, Decimal("35.00")),
    ]


def test_the_duckdb_cli_opens_the_analyst_file_and_lists_no_internal_table(
    billed: Path,
) -> None:
    done = subprocess.run(
        [str(BIN / "duckdb"), "-readonly", "-csv", str(analyst_path(billed)), "-c",
         "SELECT period, count(*) AS lines, sum(amount) AS amount FROM charges "
         "GROUP BY ALL ORDER BY 1; SELECT count(*) AS events FROM usage;"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    # January: activation, TV fee, voice fee, usage 12.00, discount -10.00 = 37.32 (as above).
    assert "2026-01,5,37.3200" in lines
    assert "events" in lines and lines[lines.index("events") + 1] == "2"  # E1, E2 (E3: later)
    listed = subprocess.run(
        [str(BIN / "duckdb"), "-readonly", str(analyst_path(billed)), "-c", ".tables"],
        capture_output=True, text=True, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "invoice_summary" in listed.stdout
    for internal in ("billrun_meta", "fingerprints", "run_state", "usage_marks"):
        assert internal not in listed.stdout


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = "SELECT count(*) FROM charges WHERE period = '2026-02' AND line_type = 'usage'"
while True:
    print(con.execute(query).fetchone()[0], flush=True)
    if not sys.stdin.readline():
        break
"""


def test_a_reader_of_the_previous_file_keeps_reading_while_a_new_one_is_published(
    billed: Path, tmp_path: Path
) -> None:
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(analyst_path(db))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "0"  # no February usage yet
        drop = write_drop(tmp_path / "feb", usage=FEB_USAGE)
        nightly_flow(date(2026, 2, 10), db=str(db), input_dir=str(drop))  # publishes a set
        for _ in range(2):  # its previous file still reads its (kept) previous set
            reader.stdin.write("\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "0"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM charges WHERE period = '2026-02' "
                           "AND line_type = 'usage'").fetchone() == (1,)


PUBLISH = "import sys; from store.snapshot import publish_snapshot; publish_snapshot(sys.argv[1])"


def test_a_kill_while_publishing_leaves_the_previous_set_whole(
    billed: Path, tmp_path: Path
) -> None:
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    before = parquet_pointer(db).resolve()
    files = {p: p.stat().st_ino for p in before.rglob("*") if p.is_file()}
    with duckdb.connect(str(db)) as con:  # a change to publish: one more January event
        con.execute("INSERT INTO usage BY NAME SELECT 'E8' AS event_id, * EXCLUDE (event_id, "
                    "run_id), 'load-later' AS run_id FROM usage WHERE event_id = 'E1'")
        con.execute("INSERT INTO runs BY NAME SELECT 'load-later' AS run_id, * EXCLUDE (run_id) "
                    "FROM runs LIMIT 1")
    marker = tmp_path / "paused"
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISH, str(db)], cwd=Path(__file__).parents[2],
        env={**os.environ, "BILLRUN_PAUSE_AT": "mid-publish", "BILLRUN_PAUSE_MARKER": str(marker)},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the publisher ended before its swap"
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The new set is written but nothing points at it; the previous one is as it was.
    assert parquet_pointer(db).resolve() == before
    assert {p: p.stat().st_ino for p in before.rglob("*") if p.is_file()} == files
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage").fetchone() == (2,)
    killed = set(sets_folder(parquet_pointer(db)).iterdir()) - {before}
    assert len(killed) == 1  # the set the killed publisher wrote, never pointed at
    publish_snapshot(db)  # the next publication takes over, and removes the killed one's set
    assert set(sets_folder(parquet_pointer(db)).iterdir()) == {
        before, parquet_pointer(db).resolve()}
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage").fetchone() == (3,)
    assert_published(db)


# A step: a night (a day of February or March, with no new event, one on that day, or a late
# one in January, final), or a reprocess of January (final: adjustments) or February (final or
# a draft, by then).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("nightly"), st.integers(2, 40),
                  st.sampled_from([None, "that day", "january"])),
        st.tuples(st.just("reprocess"), st.sampled_from(["2026-01", "2026-02"]), st.none()),
    ),
    min_size=1, max_size=3,
)


@settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plan=steps)
def test_the_published_set_equals_the_tables_whatever_the_runs(
    billed: Path, tmp_path_factory: pytest.TempPathFactory,
    plan: list[tuple[str, int | str, str | None]],
) -> None:
    tmp = tmp_path_factory.mktemp("runs")
    db = copy_database(billed, tmp / "billrun.duckdb")
    day = 1
    for n, (kind, arg, event) in enumerate(plan):
        if kind == "nightly":
            day = max(day, int(arg))  # nights move forward; Feb 1 + (arg - 1) days
            as_of = date.fromordinal(date(2026, 2, 1).toordinal() + day - 1)
            drop = None
            if event is not None:
                stamp = "2026-01-20" if event == "january" else as_of.isoformat()
                drop = write_drop(tmp / f"drop{n}", usage=USAGE_HEADER
                                  + f"N{n},A1,voice,US,{stamp} 08:00:00,{10 + n},{1 + n}.00\n")
            nightly_flow(as_of, db=str(db), input_dir=str(drop) if drop else None)
        else:
            reprocess_flow(str(arg), db=str(db))
        assert_published(db)


PERIOD_SPLIT = ("charges", "invoices", "decisions", "documents", "finalized_periods",
                "counter_periods", "discount_counters", "adjustments", "quota_rollovers")


def test_a_night_reads_only_the_partitions_of_the_periods_it_wrote(
    billed: Path, tmp_path: Path
) -> None:
    """History does not slow a night: its publication finds what changed by reading only the
    partitions of the periods the run wrote (February here, January being final), not every
    period ever billed; the manifest's `read` lists them."""
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    drop = write_drop(tmp_path / "feb", usage=FEB_USAGE)
    nightly_flow(date(2026, 2, 10), db=str(db), input_dir=str(drop))
    manifest = json.loads((parquet_pointer(db).resolve() / MANIFEST).read_text())
    for table in PERIOD_SPLIT:
        assert manifest["relations"][table]["read"] == ["2026-02"], table
    # A load on its own writes no period-split table: it reads none of their partitions.
    assert "2026-01" in manifest["relations"]["charges"]["parts"]
    load_flow(str(write_drop(tmp_path / "more", usage=USAGE_HEADER
                             + "E5,A1,voice,US,2026-02-04 12:00:00,10,1.00\n")), str(db))
    loaded = json.loads((parquet_pointer(db).resolve() / MANIFEST).read_text())
    for table in PERIOD_SPLIT:
        assert loaded["relations"][table]["read"] == [], table
        assert loaded["relations"][table]["parts"] == manifest["relations"][table]["parts"]
    assert_published(db)


def test_a_row_changed_outside_the_periods_a_run_names_is_still_published(
    billed: Path, tmp_path: Path
) -> None:
    """The periods a run names are checked by row counts: a January line removed by hand (not
    by a run) makes the publication count every partition, and January is written again."""
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    with duckdb.connect(str(db)) as con:
        (january,) = con.execute(
            "SELECT count(*) FROM charges WHERE period = '2026-01'").fetchone()
        con.execute("DELETE FROM charges WHERE rowid = (SELECT min(rowid) FROM charges "
                    "WHERE period = '2026-01')")
    publish_snapshot(db, "by-hand", touched=frozenset({"2026-02"}))
    manifest = json.loads((parquet_pointer(db).resolve() / MANIFEST).read_text())
    charges = manifest["relations"]["charges"]
    assert charges["read"] is None  # the count differed: every partition counted
    assert charges["parts"]["2026-01"]["rows"] == january - 1
    assert manifest["relations"]["invoices"]["read"] == ["2026-02"]
    assert_published(db)

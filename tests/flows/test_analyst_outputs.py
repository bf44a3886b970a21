"""What analysts open (SPEC §5, issue 13 item 2), through the real CLI: the analyst copy in the
real `duckdb-cli` shell from PyPI, the Parquet set in Polars, and `billrun sql`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from store.parquet_set import PARQUET_TABLES, parquet_pointer, sets_folder
from store.snapshot import analyst_path

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FEB_USAGE = (
    "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
    "E4,A1,voice,US,2026-02-03 12:00:00,20,2.00\n"
)


def read_relation(folder: Path, name: str) -> pl.DataFrame:
    """A table or view of the set as an analyst reads it with Polars: its file, or the folder of
    its partitions (docs/TABLES.md, "The Parquet set")."""
    whole = folder / f"{name}.parquet"
    if whole.exists():
        return pl.read_parquet(whole)
    # Without the folder's label as a column (`month`, which the usage's files do not hold).
    return pl.read_parquet(folder / name, hive_partitioning=False)


def billrun(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "billrun"), *args], input=stdin, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made scenario loaded and billed as of 2026-02-01 by the CLI (shared by the
    module: later runs here change no invoice total)."""
    from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

    tmp = tmp_path_factory.mktemp("analyst")
    drop = write_drop(
        tmp / "drop", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS, usage=USAGE
    )
    db = tmp / "billrun.duckdb"
    assert billrun("load", str(drop), "--db", str(db)).returncode == 0
    done = billrun("nightly", "--as-of", "2026-02-01", "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db


def test_the_pypi_duckdb_cli_opens_the_copy_and_queries_views(billed: Path) -> None:
    duckdb_cli = BIN / "duckdb"
    assert duckdb_cli.exists(), "install the test extra: pip install -e '.[test]' (duckdb-cli)"
    assert "v1." in subprocess.run(
        [str(duckdb_cli), "--version"], capture_output=True, text=True
    ).stdout
    done = subprocess.run(
        [
            str(duckdb_cli), "-readonly", "-csv", str(analyst_path(billed)), "-c",
            "SELECT period, status, currency, invoices, total FROM invoice_summary "
            "ORDER BY period; "
            "SELECT account_id, addon_id, would_conflict_with, conflict_outcome "
            "FROM available_addons;",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    # January, final: TV 30.00 x 21/31 days = 20.32, activation 10.00, voice add-on 5.00,
    # 120 min at 0.10 with the first 100 free = 2.00: 37.32. February, draft: 30.00 + 5.00.
    assert "2026-01,final,USD,1,37.3200" in lines
    assert "2026-02,draft,USD,1,35.0000" in lines
    # A1 holds TV and VOICE100; VOICE200 has the same priority and key: it would replace it.
    assert "A1,ADD_VOICE200,AS_V100,would replace" in done.stdout


def test_polars_reads_the_parquet_set_and_it_equals_the_tables(billed: Path) -> None:
    folder = parquet_pointer(billed)
    assert folder.is_symlink() and folder.name == "billrun.analyst"
    with duckdb.connect(str(billed), read_only=True) as con:
        for table in PARQUET_TABLES:
            got = read_relation(folder, table)
            want = con.sql(f"SELECT * FROM {table}").pl()
            assert got.columns == want.columns, table
            assert got.sort(got.columns).equals(want.sort(want.columns)), table
    invoices = read_relation(folder, "invoices")
    assert invoices.schema["total"] == pl.Decimal(38, 4)  # money stays exact (docs/INPUTS.md)
    assert invoices["total"].sum() == Decimal("72.32")  # 37.32 + 35.00, as above
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["rows"]["invoices"] == 2


def test_each_run_swaps_in_a_whole_new_set_and_keeps_two(billed: Path, tmp_path: Path) -> None:
    drop = tmp_path / "feb"
    drop.mkdir()
    (drop / "usage.csv").write_text(FEB_USAGE)
    pointer = parquet_pointer(billed)
    for as_of in ("2026-02-10", "2026-02-11"):  # three sets made, two kept
        before = pointer.resolve()
        done = billrun(
            "nightly", "--as-of", as_of, "--db", str(billed), "--input", str(drop)
        )
        assert done.returncode == 0, done.stderr
        assert pointer.resolve() != before
    with duckdb.connect(str(billed), read_only=True) as con:
        last_run = con.execute("SELECT max(run_id) FROM runs").fetchone()[0]
    assert json.loads((pointer / "_manifest.json").read_text())["set"] == last_run
    assert len([p for p in sets_folder(pointer).iterdir() if p.is_dir()]) == 2
    # February now has the Feb 3 call: 20 min at 0.10 = 2.00, inside February's 100 free
    # minutes, so a discount of -2.00: the invoice stays 35.00.
    feb = read_relation(pointer, "invoices").filter(pl.col("period") == "2026-02")
    assert feb["total"].to_list() == [Decimal("35.0000")]


def test_billrun_sql_runs_a_query_or_a_prompt_read_only(billed: Path) -> None:
    done = billrun("sql", "--db", str(billed), "SELECT sum(total) AS billed FROM invoices")
    assert done.returncode == 0, done.stderr
    assert "72.3200" in done.stdout  # 37.32 + 35.00
    piped = billrun(
        "sql", "--db", str(billed),
        stdin="SELECT 'offers-' || count(*) AS n\n  FROM available_addons;\nSELECT nope;\n"
        ".tables\n",
    )
    assert piped.returncode == 0, piped.stderr
    assert "offers-1" in piped.stdout  # VOICE200 is the one add-on A1 does not hold
    # A bad statement at the prompt is reported and the session goes on to `.tables`.
    assert "error:" in piped.stdout and "invoice_summary" in piped.stdout
    # Read-only: a write is refused, and exit 2 names the error (the tables are views over
    # the Parquet set there: a DELETE is refused before it reaches the read-only file).
    refused = billrun("sql", "--db", str(billed), "DELETE FROM invoices")
    assert refused.returncode == 2 and "base table" in refused.stderr
    refused = billrun("sql", "--db", str(billed), "CREATE TABLE mine AS SELECT 1")
    assert refused.returncode == 2 and "read-only" in refused.stderr
    missing = billrun("sql", "--db", str(billed.with_name("none.duckdb")), "SELECT 1")
    assert missing.returncode == 2 and "no analyst copy" in missing.stderr


def test_a_run_killed_while_publishing_leaves_the_previous_set(billed: Path) -> None:
    pointer = parquet_pointer(billed)
    before = pointer.resolve()
    marker = billed.with_name("paused-mid-publish")
    proc = subprocess.Popen(
        [str(BIN / "billrun"), "nightly", "--as-of", "2026-02-13", "--db", str(billed)],
        env={**os.environ, "BILLRUN_PAUSE_AT": "mid-publish", "BILLRUN_PAUSE_MARKER": str(marker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: the kill takes Prefect's server child too
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the run ended before publishing"
            assert time.monotonic() < deadline, "the run never reached mid-publish"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The new set was written but never pointed at: readers still get the previous whole set.
    assert pointer.resolve() == before
    assert json.loads((pointer / "_manifest.json").read_text())["rows"]["invoices"] == 2
    orphans = [p for p in sets_folder(pointer).iterdir() if p.resolve() != before]
    assert len(orphans) == 2  # the set before (kept for late readers) and the killed run's
    # The next run publishes, and keeps only its own set and the one it replaced.
    assert billrun("nightly", "--as-of", "2026-02-14", "--db", str(billed)).returncode == 0
    assert {p.resolve() for p in sets_folder(pointer).iterdir()} == {pointer.resolve(), before}

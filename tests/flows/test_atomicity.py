"""Runs are atomic, exclusive, and never blocked by analysts (SPEC §5).

These tests use real subprocesses: a real `billrun nightly` frozen at a named point and killed
with SIGKILL, and a real analyst process holding the analyst copy open.
"""

from __future__ import annotations

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

from flows.load import load_flow
from flows.nightly import nightly_flow
from store.runlock import RunInProgressError, run_lock
from store.snapshot import analyst_path

pytestmark = pytest.mark.slow

FEB_USAGE = (
    "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
    "E4,A1,voice,US,2026-02-03 12:00:00,20,2.00\n"
)
RESULT_TABLES = ["charges", "invoices", "decisions", "discount_counters", "counter_periods",
                 "adjustments", "activation_locks", "runs", "documents"]


def dump(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in RESULT_TABLES}


def cli(*args: str) -> list[str]:
    code = f"import sys; from billrun.cli import main; sys.exit(main({list(args)!r}))"
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def billed_once(module_scenario: dict[str, Path], write_drop_fixture) -> Path:
    """January final, February drafted, and a February call loaded but not billed yet."""
    write_drop = write_drop_fixture
    db = module_scenario["tmp"] / "billed.duckdb"
    load_flow(str(module_scenario["drop"]), str(db))
    nightly_flow(as_of=date(2026, 2, 1), db=str(db))
    load_flow(str(write_drop(module_scenario["tmp"] / "feb", usage=FEB_USAGE)), str(db))
    return db


@pytest.fixture()
def billed(billed_once: Path, scenario: dict[str, Path], copy_db) -> Path:
    """The module's billed database, copied for this test (built once per module)."""
    return copy_db(billed_once, scenario["db"])


def _freeze_run_at(
    point: str, db: Path, tmp: Path, as_of: str = "2026-02-10"
) -> subprocess.Popen:
    marker = tmp / f"paused-{point}"
    env = {**os.environ, "BILLRUN_PAUSE_AT": point, "BILLRUN_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        cli("nightly", "--as-of", as_of, "--db", str(db)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {point}: {proc.stdout.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"run never reached {point}")
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("point", ["after-decisions", "mid-write", "before-commit"])
def test_sigkill_before_commit_leaves_previous_results_whole(
    point: str, billed: Path, scenario: dict[str, Path]
) -> None:
    before = dump(billed)
    proc = _freeze_run_at(point, billed, scenario["tmp"])
    # While it is frozen holding the run lock, a second run is refused and changes nothing.
    with pytest.raises(RunInProgressError, match="another billrun run"):
        nightly_flow(as_of=date(2026, 2, 10), db=str(billed))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert dump(billed) == before
    # The lock died with the process: the next run goes through and bills the Feb 3 call.
    nightly_flow(as_of=date(2026, 2, 10), db=str(billed))
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute(
            "SELECT amount FROM charges WHERE period='2026-02' AND line_type='usage'"
        ).fetchall() == [(Decimal("2.00"),)]


def test_a_run_killed_in_its_commit_gives_no_number_and_the_next_leaves_no_gap(
    billed: Path, scenario: dict[str, Path]
) -> None:
    """SPEC §9: the 2026-03-01 nightly finalizes February; killed after it numbered the invoice
    inside its transaction, it leaves no number, and the next run gives February the next one
    (30.00 + 5.00; its 20-minute call is within the 100 free minutes)."""
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute("SELECT document_number FROM documents").fetchall() == [
            ("INV-00000001",)]  # January
    proc = _freeze_run_at("before-commit", billed, scenario["tmp"], as_of="2026-03-01")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM documents").fetchone() == (1,)
    nightly_flow(as_of=date(2026, 3, 1), db=str(billed))
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute(
            "SELECT document_number, period, total FROM documents ORDER BY sequence"
        ).fetchall() == [("INV-00000001", "2026-01", Decimal("37.32")),
                         ("INV-00000002", "2026-02", Decimal("35.00"))]


def test_sigkill_while_publishing_keeps_a_readable_analyst_copy(
    billed: Path, scenario: dict[str, Path]
) -> None:
    proc = _freeze_run_at("mid-publish", billed, scenario["tmp"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The run had committed: the working database has the new results ...
    with duckdb.connect(str(billed), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM charges WHERE period='2026-02' AND line_type='usage'"
        ).fetchone() == (1,)
    # ... and the analyst copy is the previous whole one, still readable.
    with duckdb.connect(str(analyst_path(billed)), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM charges WHERE period='2026-02' AND line_type='usage'"
        ).fetchone() == (0,)


def test_second_run_is_refused_by_the_cli_with_exit_1(billed: Path) -> None:
    with run_lock(billed):
        done = subprocess.run(
            cli("nightly", "--as-of", "2026-02-10", "--db", str(billed)),
            capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 1
    assert "another billrun run" in done.stdout + done.stderr


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = "SELECT count(*) FROM charges WHERE period='2026-02' AND line_type='usage'"
print(con.execute(query).fetchone()[0], flush=True)
sys.stdin.readline()
print(con.execute(query).fetchone()[0], flush=True)
"""


def test_an_analyst_holding_the_copy_open_never_blocks_a_run(billed: Path) -> None:
    copy = analyst_path(billed)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(copy)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "0"
        nightly_flow(as_of=date(2026, 2, 10), db=str(billed))  # must not fail
        reader.stdin.write("\n")
        reader.stdin.flush()
        # The open session keeps its consistent (old) snapshot and does not fail.
        assert reader.stdout.readline().strip() == "0"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM charges WHERE period='2026-02' AND line_type='usage'"
        ).fetchone() == (1,)

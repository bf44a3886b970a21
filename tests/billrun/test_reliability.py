"""Issue 12: every expected failure is a short message and an exit code, never a traceback;
guard rails against irreversible typos; load takes the run lock; a file missing a column is
rejected whole while the rest of the drop loads.

The failing commands run as real subprocesses (a real `billrun`, a real Prefect flow, a real
DuckDB file), because the noise this guards against (Prefect's traceback, nanobind's leak report
printed after the interpreter has shut down) is only visible from outside the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from billrun.cli import main
from billrun.config import load_settings
from billrun.guards import as_of_refusal
from store.runlock import run_lock
from store.snapshot import analyst_path, publish_snapshot

CATALOG = """
currencies: {USD: 2}
main_products:
  - {id: MP_BASIC, name: Basic, available_addons: [ADD_TV]}
addons:
  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_TV}
subscriptions:
  - id: SUB_TV
    fee_plans:
      - {id: TV1, term_months: 1, fee: "30.00", currency: USD}
"""
ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
A1,USD,MP_BASIC,1,active,2026-01-01,,
"""
ASSIGNMENTS = """
assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
AS_TV,A1,ADD_TV,TV1,2026-01-01,,2025-12-30 09:00:00,1
"""


def _drop(folder: Path, **files: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = folder / ("catalog.yaml" if name == "catalog" else f"{name}.csv")
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text.lstrip("\n"), encoding="utf-8")
    return folder


def billrun(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `billrun ARGV` as its own process, with a Prefect home of its own."""
    env = {**os.environ, "BILLRUN_PREFECT_HOME": str(cwd / "prefect-home")}
    env.pop("BILLRUN_VERBOSE", None)
    return subprocess.run(
        [sys.executable, "-m", "billrun.cli", *argv],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
    )


def assert_quiet(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    """Exit `code`, a short stderr that says `words`, no traceback, no nanobind report."""
    err = done.stderr
    assert done.returncode == code, err
    assert "Traceback" not in err and "nanobind" not in err, err
    assert len(err.strip().splitlines()) <= 3, err
    assert words in " ".join(err.split()), err


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database loaded and billed by one nightly as of 2026-02-10 (periods 2026-01, 2026-02)."""
    work = tmp_path_factory.mktemp("billed")
    drop = _drop(work / "drop", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS)
    db = work / "billrun.duckdb"
    assert main(["load", str(drop), "--db", str(db)]) == 0
    assert main(["nightly", "--as-of", "2026-02-10", "--db", str(db)]) == 0
    return db


# ---------------------------------------------------------------------------------------------
# Item 4 and 5: no traceback, no noise


def test_a_catalog_that_is_not_utf8_is_exit_2(tmp_path: Path) -> None:
    drop = _drop(tmp_path / "drop", catalog="currencies: {USD: 2}\n# caf\xe9\n".encode("latin-1"))
    done = billrun("load", str(drop), "--db", str(tmp_path / "db.duckdb"), cwd=tmp_path)
    assert_quiet(done, 2, "catalog.yaml: not UTF-8 text (byte 0xe9 at offset 26)")


def test_a_catalog_fee_too_big_is_exit_2_at_load(tmp_path: Path) -> None:
    huge = CATALOG.replace('fee: "30.00"', 'fee: "100000000000000000000.00"')
    drop = _drop(tmp_path / "drop", catalog=huge, accounts=ACCOUNTS)
    db = tmp_path / "db.duckdb"
    done = billrun("load", str(drop), "--db", str(db), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "subscriptions[SUB_TV].fee_plans[TV1].fee: 100000000000000000000.00 is more than" in (
        " ".join(done.stderr.split())
    )
    assert not db.exists()


def test_explain_on_a_file_that_is_not_duckdb_is_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database\n" * 100)
    done = billrun("explain", "--account", "A1", "--period", "2026-01", "--db", str(junk),
                   cwd=tmp_path)
    assert_quiet(done, 2, f"{junk} is not a billrun DuckDB database")


def test_explain_on_a_duckdb_file_without_billrun_tables_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    code = main(["explain", "--account", "A1", "--period", "2026-01", "--db", str(other)])
    assert code == 2
    assert f"{other} is not a billrun DuckDB database" in capsys.readouterr().err


def test_explain_while_a_run_holds_the_database_and_no_copy_exists(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    with duckdb.connect(str(db)):  # a writer holds DuckDB's file lock, as a nightly does
        done = billrun("explain", "--account", "A1", "--period", "2026-01", "--db", str(db),
                       cwd=tmp_path)
    assert not analyst_path(db).exists()
    assert_quiet(done, 1, "its analyst copy billrun.analyst.duckdb does not exist yet")


# A usage file that is not Parquet passes every check made before the run (its name is right)
# and fails inside the flow: the reader finds it out. (A --db that is not a DuckDB database is
# refused before any flow starts: tests/billrun/test_guards_cli.py.)


def test_a_load_that_fails_in_its_flow_is_one_line(tmp_path: Path) -> None:
    drop = _drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS)
    (drop / "usage.parquet").write_text("not parquet\n" * 100)
    done = billrun("load", str(drop), "--db", str(tmp_path / "billrun.duckdb"), cwd=tmp_path)
    assert_quiet(done, 1, "load failed, nothing was written")


def test_a_nightly_that_fails_in_its_flow_is_one_line(tmp_path: Path) -> None:
    drop = _drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS)
    (drop / "usage.parquet").write_text("not parquet\n" * 100)
    done = billrun("nightly", "--as-of", "2026-02-01", "--db", str(tmp_path / "billrun.duckdb"),
                   "--input", str(drop), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    # The run's one-line error, with the time it ran.
    assert_quiet(done, 1, "billrun: error: run failed after")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# ---------------------------------------------------------------------------------------------
# Item 7: guard rails


@pytest.mark.parametrize(
    ("as_of", "days", "allow", "refused"),
    [
        (date(2026, 12, 3), 1, False, False),  # tomorrow: the default horizon
        (date(2026, 12, 4), 1, False, True),  # the day after tomorrow
        (date(2026, 12, 4), 1, True, False),  # --allow-future
        (date(2026, 12, 12), 10, False, False),
        (date(2026, 12, 3), 0, False, True),  # horizon 0: today at the latest
        (date(2100, 1, 1), 1, False, True),
    ],
)
def test_the_as_of_horizon(as_of: date, days: int, allow: bool, refused: bool) -> None:
    today = date(2026, 12, 2)
    assert (as_of_refusal(as_of, today, days, allow) is not None) == refused


def test_the_horizon_comes_from_the_flag_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no billrun.toml here
    monkeypatch.delenv("BILLRUN_AS_OF_HORIZON_DAYS", raising=False)
    horizon = lambda flag: load_settings({"as_of_horizon_days": flag}).settings.as_of_horizon_days  # noqa: E731
    assert horizon(None) == 1
    monkeypatch.setenv("BILLRUN_AS_OF_HORIZON_DAYS", "30")
    assert horizon(None) == 30
    assert horizon(5) == 5


def test_nightly_far_in_the_future_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    done = billrun("nightly", "--as-of", "2100-01-01", "--db", str(db), cwd=tmp_path)
    assert_quiet(done, 2, "--as-of 2100-01-01 is beyond the horizon")
    assert not db.exists()


def _runs(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_reprocess_of_a_period_never_billed_is_refused(billed: Path) -> None:
    before, runs = _table_counts(billed), _runs(billed)
    done = billrun("reprocess", "--period", "2030-01", "--db", str(billed), cwd=billed.parent)
    assert_quiet(done, 2, "period 2030-01 was never billed")
    assert "the billed periods are 2026-01 to 2026-02" in " ".join(done.stderr.split())
    assert _table_counts(billed) == before
    # Refused before anything runs (issue 21): no failed run recorded.
    assert _runs(billed) == runs


def test_reprocess_of_a_billed_period_still_runs(billed: Path) -> None:
    assert main(["reprocess", "--period", "2026-01", "--db", str(billed)]) == 0


def _table_counts(db: Path) -> list[int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("decisions", "charges", "invoices", "adjustments")
        ]


# ---------------------------------------------------------------------------------------------
# Item 8: run lock, stale temp files, a file missing a column


def test_load_takes_the_run_lock(tmp_path: Path) -> None:
    drop = _drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS)
    db = tmp_path / "billrun.duckdb"
    with run_lock(db):  # as a running nightly holds it
        done = billrun("load", str(drop), "--db", str(db), cwd=tmp_path)
    assert_quiet(done, 1, "refused: another billrun run")


def test_stale_analyst_temp_files_are_swept_at_the_next_publish(
    billed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "billrun.duckdb"
    shutil.copyfile(billed, db)  # a billed database: the copy and the Parquet set read its tables
    target = analyst_path(db)
    # pid 4194304 is above Linux's pid_max limit (2^22): no process can have it.
    stale = tmp_path / f".{target.name}.tmp-4194304"
    stale.write_bytes(b"half a copy")
    live = tmp_path / f".{target.name}.tmp-1"  # pid 1 is alive: its copy is left alone
    live.write_bytes(b"being copied")
    publish_snapshot(db)
    assert target.exists()
    assert not stale.exists()
    assert live.exists()


@pytest.mark.parametrize(
    ("kind", "text", "missing"),
    [
        ("usage", "event_id,account_id,service,destination_group,started_at,quantity\n"
         "E1,A1,voice,US,2026-01-05 10:00:00,5\nE2,A1,voice,US,2026-01-06 10:00:00,7\n",
         "amount"),
        ("assignments", "assignment_id,account_id,addon_id,fee_plan_id,assigned_at\n"
         "AS_TV,A1,ADD_TV,TV1,2025-12-30 09:00:00\nAS_2,A1,ADD_TV,TV1,2025-12-30 09:00:00\n",
         "start_date"),
    ],
)
def test_a_file_missing_a_column_is_rejected_whole_and_the_drop_loads(
    tmp_path: Path, kind: str, text: str, missing: str
) -> None:
    drop = _drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS, **{kind: text})
    db = tmp_path / "billrun.duckdb"
    assert main(["load", str(drop), "--db", str(db)]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        accounts = con.execute("SELECT account_id FROM accounts").fetchall()
        rejected = con.execute(
            "SELECT source, line, reason, raw FROM rejected_rows ORDER BY line"
        ).fetchall()
        stored = con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0]
    assert accounts == [("A1",)]
    assert stored == 0
    lines = text.splitlines()
    reason = f"{missing}: required column missing from the header of {kind}.csv"
    # Every data line (lines 2 and 3 of the file) is kept whole, as it was written.
    assert rejected == [(f"{kind}.csv", 2, reason, lines[1]), (f"{kind}.csv", 3, reason, lines[2])]


# ---------------------------------------------------------------------------------------------
# Items 1 and 2: money never wraps, a valid row never blocks a night

VOICE_CATALOG = (CATALOG + """
  - id: SUB_VOICE
    fee_plans:
      - {id: V1, term_months: 1, fee: "5.00", currency: USD}
discount_plans:
  - id: VDP_US100
    entries:
      - {service: voice, destination_group: US, threshold_type: quantity,
         tiers: [[0, 100], [100, 0]]}
""").replace(
    "available_addons: [ADD_TV]", "available_addons: [ADD_TV, ADD_VOICE100]"
).replace(
    "  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_TV}\n",
    "  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_TV}\n"
    "  - {id: ADD_VOICE100, name: 100 free US minutes, priority: 20, discount_plan: VDP_US100,\n"
    "     subscription: SUB_VOICE}\n",
)
VOICE_ASSIGNMENTS = """
assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
AS_V,A1,ADD_VOICE100,V1,2026-01-01,,2025-12-30 09:00:00,1
"""


def _events(quantity: str, amount: str, n: int) -> str:
    rows = [f"E{i},A1,voice,US,2026-01-0{i + 1} 10:00:00,{quantity},{amount}" for i in range(n)]
    return "event_id,account_id,service,destination_group,started_at,quantity,amount\n" + (
        "\n".join(rows) + "\n"
    )


def _bill(tmp_path: Path, usage: str) -> tuple[Path, int]:
    drop = _drop(tmp_path / "drop", catalog=VOICE_CATALOG, accounts=ACCOUNTS,
                 assignments=VOICE_ASSIGNMENTS, usage=usage)
    db = tmp_path / "billrun.duckdb"
    assert main(["load", str(drop), "--db", str(db)]) == 0
    return db, main(["nightly", "--as-of", "2026-02-01", "--db", str(db)])


def test_the_issues_amounts_are_rejected_at_load_and_the_night_bills(tmp_path: Path) -> None:
    # Issue 12 repro 1: ten events of 999999999999.999999 gave a final invoice of
    # -8446744073709.55. Beyond the stated bound, each is now rejected with its reason.
    db, code = _bill(tmp_path, _events("1", "999999999999.999999", 9))
    assert code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        reasons = con.execute("SELECT DISTINCT reason FROM rejected_rows").fetchall()
        total = con.execute(
            "SELECT total, status FROM invoices WHERE period = '2026-01'"
        ).fetchall()
    assert reasons == [("amount: '999999999999.999999' is more than 999999999.999999",)]
    assert total == [(Decimal("5.00"), "final")]  # the V1 fee alone


def test_the_issues_quantities_are_rejected_at_load_and_the_night_bills(tmp_path: Path) -> None:
    # Issue 12 repro 2: three voice/US events of quantity 999999999999 on a quantity discount
    # plan made every nightly fail casting the counter to DECIMAL(18,0).
    db, code = _bill(tmp_path, _events("999999999999", "1", 3))
    assert code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        rejected = con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0]
    assert rejected == 3


def test_the_largest_quantities_bill_and_count_exactly(tmp_path: Path) -> None:
    # Three events of 999999999.999999 minutes at 999999999.999999 dollars each: the counter is
    # 2999999999.999997; usage 2999999999.999997 -> 3000000000.00; the first 100 minutes are
    # free: 100 / 999999999.999999 of the first event's amount = 100.00 exactly; fee 5.00.
    # Total 5.00 + 3000000000.00 - 100.00 = 2999999905.00.
    db, code = _bill(tmp_path, _events("999999999.999999", "999999999.999999", 3))
    assert code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        counter = con.execute("SELECT value FROM discount_counters").fetchall()
        total = con.execute("SELECT total FROM invoices WHERE period = '2026-01'").fetchall()
    assert counter == [(Decimal("2999999999.999997"),)]
    assert total == [(Decimal("2999999905.00"),)]


def test_a_night_with_every_row_rejected_still_runs(tmp_path: Path) -> None:
    # Only bad usage and no assignment: nothing to bill. This used to fail the nightly with
    # `ColumnNotFoundError` (an empty list of lines had no columns), night after night.
    drop = _drop(tmp_path / "drop", catalog=CATALOG, accounts=ACCOUNTS,
                 usage=_events("1", "999999999999.999999", 2))
    db = tmp_path / "billrun.duckdb"
    assert main(["load", str(drop), "--db", str(db)]) == 0
    assert main(["nightly", "--as-of", "2026-02-01", "--db", str(db)]) == 0

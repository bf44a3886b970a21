"""Issue 21, item 1: `late_usage = "adjust"` (`nightly --adjust-late`, BILLRUN_LATE_USAGE,
billrun.toml) bills late usage of a final period in the night's own run and transaction, with
adjustment lines and a note, as `billrun reprocess --period P` would (docs/RUNS.md, "Late
usage"). Through the real CLI, on real DuckDB files, with real Prefect flows.

The base database, billed once per module: the scenario of tests/flows/conftest.py loaded and
billed as of Feb 1 (January final), then a late January call loaded. Each test runs the next
night on its own copy.
"""

from __future__ import annotations

import contextlib
import io
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
from rich.console import Console

from billrun import commands, summary
from billrun.cli import main
from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop
from tests.flows.test_kills import dump, results

# Loaded after January was finalized: 30 more minutes on Jan 28, $3.00 ($0.10 a minute).
LATE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E3,A1,voice,US,2026-01-28 09:00:00,30,3.00
"""
NIGHT = ["nightly", "--as-of", "2026-02-02"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("late-adjust")
    drop = write_drop(tmp / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    db = tmp / "base.duckdb"
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        # The night loads its drop itself (`nightly --input`): one flow, one publication.
        assert main(["nightly", "--as-of", "2026-02-01", "--input", str(drop), "--db",
                     str(db)]) == 0
        assert main(["load", str(write_drop(tmp / "late", usage=LATE)), "--db", str(db)]) == 0
    return db


@pytest.fixture()
def db(base: Path, tmp_path: Path) -> Path:
    """The test's own copy of the base database (no analyst copy: the night publishes one)."""
    own = tmp_path / "billrun.duckdb"
    own.write_bytes(base.read_bytes())
    return own


def run(argv: list[str], db: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """`billrun ARGV --db DB` in this process, printed at 80 columns: (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(commands, "console", Console(width=80, file=out))
    monkeypatch.setattr(commands, "err_console", Console(width=80, file=err, soft_wrap=True))
    monkeypatch.setattr(summary, "console", Console(width=80, file=out))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--db", str(db)])
    return code, out.getvalue(), err.getvalue()


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def late_waiting(db: Path) -> list[tuple]:
    return query(db, "SELECT period, account_id, event_id FROM late_usage")


# What the adjusting night must write, worked out from the catalog and the usage files: A1's
# January usage line was E1 + E2 = 50 + 70 minutes, $12.00, of which VDP_US100's first 100
# minutes are free (a -10.00 discount line). E3 adds 30 minutes past the free 100 (counter 120
# to 150, tier [100, 0]: no discount): the usage line becomes 150 minutes, $15.00, and the
# discount line stays -10.00. One adjustment line: +30 minutes, +3.00 USD; one debit note.
ADJUSTMENT = ("2026-01", "A1", "usage", "AS_V100", "voice", "US", Decimal("30.000000"),
              Decimal("3.00"), "USD")


def test_adjust_late_bills_it_in_the_night_with_a_note_and_one_runs_row(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert late_waiting(db) == [("2026-01", "A1", "E3")]
    runs_before = query(db, "SELECT count(*) FROM runs")[0][0]
    invoice = query(db, "SELECT invoice_number FROM invoices WHERE period = '2026-01'")[0][0]

    code, out, err = run([*NIGHT, "--adjust-late", "--json"], db, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)

    # The night's one runs row names the period it reprocessed.
    assert query(db, "SELECT count(*) FROM runs")[0][0] == runs_before + 1
    assert query(db, "SELECT kind, period, as_of, status FROM runs ORDER BY started_at DESC "
                     "LIMIT 1") == [("nightly", "2026-01", date(2026, 2, 2), "success")]
    adjustments = query(db, """SELECT period, account_id, line_type, assignment_id, service,
        destination_group, quantity, amount, currency, run_id, reason FROM adjustments""")
    assert [a[:9] for a in adjustments] == [ADJUSTMENT]
    assert adjustments[0][9] == doc["run_id"]
    assert adjustments[0][10] == ("late or corrected usage: usage line changed on reprocess of "
                                  "finalized period 2026-01: billed 12.00, now 15.00 USD")
    # The note: a debit note for +3.00 that corrects January's invoice, numbered in this run.
    notes = query(db, "SELECT document_number, kind, total, corrects, run_id FROM documents "
                      "WHERE kind <> 'invoice'")
    assert notes == [("DN-00000001", "debit_note", Decimal("3.00"), invoice, doc["run_id"])]
    # January's final invoice is untouched (TV 10.00 + 30.00 x 21/31 = 30.32; voice 5.00 +
    # 12.00 - 10.00 = 7.00), and nothing is waiting any more.
    assert query(db, "SELECT total, status FROM invoices WHERE period = '2026-01'") == [
        (Decimal("37.32"), "final")]
    assert late_waiting(db) == []

    # The summary says what it adjusted, per period; nothing is left to bill.
    assert doc["late_usage_adjusted"] == [{"period": "2026-01", "events": 1,
                                           "adjustment_lines": 1,
                                           "net": [{"currency": "USD", "amount": "3.00"}]}]
    assert doc["late_usage"] == []
    assert doc["adjustment_lines"] == 1 and doc["periods"] == ["2026-02"]


def test_the_summary_says_what_it_adjusted_at_80_columns(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run([*NIGHT, "--adjust-late"], db, monkeypatch)
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    text = " ".join(out.replace("│", " ").split())
    assert ("late usage 2026-01 billed 1 late event(s) billed on 1 adjustment line(s), "
            "net +3.00 USD") in text
    assert "debit notes issued 1 (DN-00000001)" in text
    # No never-reset counter or rollover parcel moved: the next night continues the draft.
    assert "drafts the next night can continue 1" in text
    assert "not billed yet" not in text


def test_a_second_night_with_the_same_inputs_adds_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run([*NIGHT, "--adjust-late"], db, monkeypatch)[0] == 0
    once = results(db)
    code, out, _ = run([*NIGHT, "--adjust-late", "--json"], db, monkeypatch)
    assert code == 0
    doc = json.loads(out)
    assert doc["late_usage_adjusted"] == [] and doc["adjustment_lines"] == 0
    twice = results(db)
    assert len(twice.pop("runs")) == len(once.pop("runs")) + 1  # only the run log grows
    assert twice == once
    assert query(db, "SELECT period FROM runs ORDER BY started_at DESC LIMIT 1") == [(None,)]


def test_report_is_the_default_and_leaves_it_unbilled_and_counted(
    db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no billrun.toml here
    monkeypatch.delenv("BILLRUN_LATE_USAGE", raising=False)
    code, out, err = run([*NIGHT, "--json"], db, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["late_usage"] == [{"period": "2026-01", "events": 1,
                                  "bill_with": "billrun reprocess --period 2026-01"}]
    assert doc["late_usage_adjusted"] == []
    assert query(db, "SELECT count(*) FROM adjustments") == [(0,)]
    assert late_waiting(db) == [("2026-01", "A1", "E3")]


def test_the_dry_run_says_which_periods_the_night_would_reprocess(
    db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BILLRUN_LATE_USAGE", raising=False)
    before = dump(db)
    code, out, err = run([*NIGHT, "--dry-run", "--adjust-late"], db, monkeypatch)
    assert code == 0, err
    assert ("2026-01: reprocess its final accounts for 1 late event(s), with adjustment lines "
            "(late_usage = adjust)") in " ".join(out.split())
    code, out, err = run([*NIGHT, "--dry-run"], db, monkeypatch)
    assert code == 0, err
    assert ("late usage 2026-01: 1 event(s) in a final period, not billed yet: billrun "
            "reprocess --period 2026-01") in " ".join(out.split())
    assert dump(db) == before


@pytest.mark.parametrize("where", ["toml", "env"])
def test_the_setting_from_the_file_or_the_environment(
    where: str, db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BILLRUN_LATE_USAGE", raising=False)
    if where == "toml":
        (tmp_path / "billrun.toml").write_text('late_usage = "adjust"\n')
    else:
        monkeypatch.setenv("BILLRUN_LATE_USAGE", "adjust")
    code, out, err = run([*NIGHT, "--json"], db, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["late_usage_adjusted"][0]["adjustment_lines"] == 1
    assert [a[:9] for a in query(db, """SELECT period, account_id, line_type, assignment_id,
        service, destination_group, quantity, amount, currency FROM adjustments""")] == [
        ADJUSTMENT]


def test_precedence_flag_over_env_over_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from billrun.cli import build_parser
    from billrun.settings_cli import apply_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "billrun.toml").write_text('late_usage = "adjust"\n')
    monkeypatch.setenv("BILLRUN_LATE_USAGE", "report")
    args = build_parser().parse_args(NIGHT)
    resolved = apply_settings(args)
    assert (args.late_usage, resolved.sources["late_usage"]) == ("report",
                                                                 "env BILLRUN_LATE_USAGE")
    args = build_parser().parse_args([*NIGHT, "--adjust-late"])
    resolved = apply_settings(args)
    assert (args.late_usage, resolved.sources["late_usage"]) == ("adjust", "flag --adjust-late")
    monkeypatch.delenv("BILLRUN_LATE_USAGE")
    capsys.readouterr()
    assert main(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["settings"]["late_usage"]
    assert shown == {"value": "adjust", "source": f"file {tmp_path / 'billrun.toml'}"}


@pytest.mark.parametrize("where", ["toml", "env"])
def test_a_bad_value_is_exit_2_and_one_line(
    where: str, db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BILLRUN_LATE_USAGE", raising=False)
    if where == "toml":
        (tmp_path / "billrun.toml").write_text('late_usage = "adjsut"\n')
        source = f"file {tmp_path / 'billrun.toml'}"
    else:
        monkeypatch.setenv("BILLRUN_LATE_USAGE", "adjsut")
        source = "env BILLRUN_LATE_USAGE"
    before = dump(db)
    capsys.readouterr()
    assert main([*NIGHT, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err == (f"billrun: error: invalid configuration: late_usage ({source}) = 'adjsut': "
                   "Input should be 'report' or 'adjust'\n")
    assert dump(db) == before  # refused before anything ran: not even a runs row


def test_two_late_periods_are_reprocessed_oldest_first_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "billrun.duckdb"
    drop = write_drop(tmp_path / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    # Jan, Feb final (the night loads the drop itself: one flow)
    assert run(["nightly", "--as-of", "2026-03-01", "--input", str(drop)], db,
               monkeypatch)[0] == 0
    # February's counter starts again at 0 (reset billing_period): a 120-minute call on Feb 10,
    # $12.00, has its first 100 minutes free (-10.00 on a discount line of 100 minutes); one
    # more January call, 20 minutes past January's free 100, costs $2.00.
    late = write_drop(tmp_path / "late", usage=(
        "event_id,account_id,service,destination_group,started_at,quantity,amount\n"
        "E7,A1,voice,US,2026-02-10 09:00:00,120,12.00\n"
        "E8,A1,voice,US,2026-01-30 09:00:00,20,2.00\n"))
    assert run(["load", str(late)], db, monkeypatch)[0] == 0
    code, out, err = run(["nightly", "--as-of", "2026-03-02", "--adjust-late", "--json"], db,
                         monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert [(d["period"], d["events"], d["adjustment_lines"], d["net"]) for d in
            doc["late_usage_adjusted"]] == [
        ("2026-01", 1, 1, [{"currency": "USD", "amount": "2.00"}]),
        ("2026-02", 1, 2, [{"currency": "USD", "amount": "2.00"}]),
    ]
    assert query(db, "SELECT period, line_type, quantity, amount FROM adjustments "
                     "ORDER BY period, line_type") == [
        ("2026-01", "usage", Decimal("20.000000"), Decimal("2.00")),
        ("2026-02", "discount", Decimal("100.000000"), Decimal("-10.00")),
        ("2026-02", "usage", Decimal("120.000000"), Decimal("12.00")),
    ]
    # One debit note per period, numbered oldest period first.
    assert query(db, "SELECT document_number, period, total FROM documents "
                     "WHERE kind <> 'invoice' ORDER BY sequence") == [
        ("DN-00000001", "2026-01", Decimal("2.00")),
        ("DN-00000002", "2026-02", Decimal("2.00")),
    ]
    assert query(db, "SELECT period FROM runs ORDER BY started_at DESC LIMIT 1") == [
        ("2026-01,2026-02",)]
    assert late_waiting(db) == []


# --- A kill at a named point leaves the previous results whole ---------------------------------

def _killed_at(point: str, db: Path, tmp_path: Path) -> None:
    """Run `nightly --adjust-late` as the user's own process, freeze it at `point` and SIGKILL
    it there (store/faults.py)."""
    marker = tmp_path / "paused"
    env = {**os.environ, "BILLRUN_PAUSE_AT": point, "BILLRUN_PAUSE_MARKER": str(marker)}
    code = "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *NIGHT, "--adjust-late", "--db",
                             str(db)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"never reached {point}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("point", ["after-late-units", "mid-commit"])
def test_a_kill_leaves_the_previous_results_whole(
    point: str, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dump(db)
    _killed_at(point, db, tmp_path)
    assert dump(db) == before, f"the kill at {point} changed the tables"
    assert late_waiting(db) == [("2026-01", "A1", "E3")]
    # The next night cleans what the killed one staged and bills the late call once.
    code, _, err = run([*NIGHT, "--adjust-late"], db, monkeypatch)
    assert code == 0, err
    assert [a[:9] for a in query(db, """SELECT period, account_id, line_type, assignment_id,
        service, destination_group, quantity, amount, currency FROM adjustments""")] == [
        ADJUSTMENT]
    assert not Path(f"{db}.staging").exists()


# --- Never-reset counters: the late period's change rolls forward -----------------------------

def test_a_never_reset_counter_rolls_forward_and_the_next_night_recomputes_the_draft(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # VDP_US100's first 100 minutes are free once in the account's life (reset: never).
    catalog = CATALOG.replace("tiers: [[0, 100], [100, 0]]}",
                              "tiers: [[0, 100], [100, 0]], reset: never}", 1)
    usage = ("event_id,account_id,service,destination_group,started_at,quantity,amount\n"
             "E1,A1,voice,US,2026-01-05 10:00:00,50,5.00\n"
             "E2,A1,voice,US,2026-01-25 18:30:00,30,3.00\n"
             "E4,A1,voice,US,2026-02-05 08:00:00,40,4.00\n")
    db = tmp_path / "billrun.duckdb"
    drop = write_drop(tmp_path / "drop1", catalog=catalog, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=usage)
    # January final at 80 minutes (all free); February's draft: E4 from 80 to 120, 20 free.
    assert run(["nightly", "--as-of", "2026-02-10", "--input", str(drop)], db,
               monkeypatch)[0] == 0
    late = write_drop(tmp_path / "late", usage=LATE)  # E3: Jan 28, 30 minutes, $3.00
    assert run(["load", str(late)], db, monkeypatch)[0] == 0
    code, _, err = run(["nightly", "--as-of", "2026-02-11", "--adjust-late"], db, monkeypatch)
    assert code == 0, err
    # January now counts 110 minutes: E3 from 80 to 110, 20 of them free. The usage line goes
    # 80 -> 110 minutes (+3.00), the discount line 80 -> 100 minutes (-8.00 -> -10.00).
    assert query(db, "SELECT line_type, quantity, amount FROM adjustments ORDER BY 1") == [
        ("discount", Decimal("20.000000"), Decimal("-2.00")),
        ("usage", Decimal("30.000000"), Decimal("3.00")),
    ]
    # The lifetime counter moved by E3's 30 minutes in every later period: 50+30+30+40 = 150.
    assert query(db, "SELECT period, value FROM counter_periods ORDER BY period") == [
        ("2026-01", Decimal("110.000000")), ("2026-02", Decimal("150.000000"))]
    # The night billed February from the counter stored before it (as if it ran before the
    # reprocess), and keeps no state to continue it from: the next night recomputes it whole
    # from 110, where E4's 40 minutes are all past the free 100 (no discount line any more).
    full = tmp_path / "full.duckdb"
    full.write_bytes(db.read_bytes())
    code, out, err = run(["nightly", "--as-of", "2026-02-12", "--json"], db, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["changes"]["drafts_continued"] == 0
    assert query(db, "SELECT line_type, quantity, amount FROM charges WHERE period = '2026-02' "
                     "AND line_type IN ('usage', 'discount')") == [
        ("usage", Decimal("40.000000"), Decimal("4.00"))]
    assert run(["nightly", "--as-of", "2026-02-12", "--full"], full, monkeypatch)[0] == 0
    incremental, whole = results(db), results(full)
    incremental.pop("runs"), whole.pop("runs")
    assert incremental == whole


def test_an_account_the_night_finalizes_keeps_its_never_reset_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A2's billing day is 2: its January (Jan 2 to Feb 2) is a draft as of Feb 1 and is
    # finalized by the night of Feb 2, beside A1's late January call. The late units reprocess
    # January for A1 only (A2's January is the night's own): A2's counters must not move.
    catalog = CATALOG.replace("tiers: [[0, 100], [100, 0]]}",
                              "tiers: [[0, 100], [100, 0]], reset: never}", 1)
    accounts = ACCOUNTS + "A2,USD,MP_BASIC,2,active,2026-01-01,,\n"
    assignments = ASSIGNMENTS + "AS_V2,A2,ADD_VOICE100,V1,2026-01-02,,2026-01-01 10:00:00,1\n"
    usage = USAGE + "E20,A2,voice,US,2026-01-10 10:00:00,40,4.00\n"
    db = tmp_path / "billrun.duckdb"
    drop = write_drop(tmp_path / "drop1", catalog=catalog, accounts=accounts,
                      assignments=assignments, usage=usage)
    assert run(["nightly", "--as-of", "2026-02-01", "--input", str(drop)], db,
               monkeypatch)[0] == 0
    assert run(["load", str(write_drop(tmp_path / "late", usage=LATE))], db, monkeypatch)[0] == 0
    code, _, err = run([*NIGHT, "--adjust-late"], db, monkeypatch)
    assert code == 0, err
    # A2's lifetime minutes: E20's 40, at the end of January and still at the end of the
    # February draft (no call since). A1's: 50 + 70 + E3's 30 = 150 at the end of January,
    # rolled forward to its February draft.
    assert query(db, "SELECT account_id, period, value FROM counter_periods "
                     "ORDER BY account_id, period") == [
        ("A1", "2026-01", Decimal("150.000000")),
        ("A1", "2026-02", Decimal("150.000000")),
        ("A2", "2026-01", Decimal("40.000000")),
        ("A2", "2026-02", Decimal("40.000000")),
    ]
    assert query(db, "SELECT account_id, value FROM discount_counters ORDER BY 1") == [
        ("A1", Decimal("150.000000")), ("A2", Decimal("40.000000"))]


# --- On generated data: the night equals the report night, then each reprocess ----------------

def comparable(db: Path) -> dict[str, list[tuple]]:
    """Every results table (tests/flows/test_kills.py's `results`) but the run log and the run
    state (what a next night may continue from: a reprocess drops it for the drafts it
    recomputes, a night keeps it), and the notes without their numbers and dates, which follow
    each run's order and as-of date (and the run that issued them)."""
    numbering = {"document_number", "corrects", "issued_on", "due_on", "sequence", "run_id"}
    tables = {name: rows for name, rows in results(db).items()
              if name != "runs" and not name.startswith("run_state.")}
    with duckdb.connect(str(db), read_only=True) as con:
        kept = ", ".join(c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'documents' ORDER BY ordinal_position").fetchall() if c not in numbering)
        tables["documents"] = con.execute(
            f"SELECT {kept} FROM documents ORDER BY ALL").fetchall()
        tables["adjustments"] = con.execute(
            "SELECT * EXCLUDE (run_id, document_number) FROM adjustments ORDER BY ALL"
        ).fetchall()
    return tables


def test_on_generated_data_the_night_equals_reprocessing_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `nightly --adjust-late` commits equals a `report` night followed by `reprocess
    --period P` for each late period, oldest first: every table, ids, clocks and the notes'
    numbering aside (billing days 1 to 28: late January calls fall in 2025-12 and 2026-01)."""
    import polars as pl

    from data.generator import generate

    generate(150, tmp_path / "in", seed=7, months=2)
    base = tmp_path / "base.duckdb"
    assert run(["nightly", "--as-of", "2026-02-01", "--input", str(tmp_path / "in")], base,
               monkeypatch)[0] == 0
    usage = pl.read_csv(tmp_path / "in" / "usage.csv", infer_schema=False)
    late = usage.filter(pl.col("started_at").str.starts_with("2026-01-2")).head(40)
    (tmp_path / "late").mkdir()
    late.with_columns(pl.format("LATE-{}", pl.col("event_id")).alias("event_id")).write_csv(
        tmp_path / "late" / "usage.csv")
    assert run(["load", str(tmp_path / "late")], base, monkeypatch)[0] == 0
    waiting = query(base, "SELECT period, count(*) FROM late_usage GROUP BY 1 ORDER BY 1")
    assert [p for p, _ in waiting] == ["2025-12", "2026-01"], waiting

    adjusted, sequence = tmp_path / "adjusted.duckdb", tmp_path / "sequence.duckdb"
    adjusted.write_bytes(base.read_bytes())
    sequence.write_bytes(base.read_bytes())
    assert run([*NIGHT, "--adjust-late"], adjusted, monkeypatch)[0] == 0
    assert run(NIGHT, sequence, monkeypatch)[0] == 0
    for period, _ in waiting:
        assert run(["reprocess", "--period", period], sequence, monkeypatch)[0] == 0

    assert comparable(adjusted)["adjustments"], "the late calls changed nothing"
    assert comparable(adjusted) == comparable(sequence)
    # And so do the next nights, each continuing what its own run state allows.
    for db in (adjusted, sequence):
        assert run(["nightly", "--as-of", "2026-02-03"], db, monkeypatch)[0] == 0
    assert comparable(adjusted) == comparable(sequence)
    assert late_waiting(adjusted) == late_waiting(sequence) == []

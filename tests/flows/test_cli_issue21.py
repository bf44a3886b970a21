"""Issue 21, item 6: the small things a new user met, through the CLI as the user ran it.

One database is billed per module, in-process (load, nightly as of Feb 1, a late January call,
reprocess of January); the few checks that need the real `billrun` script (exit code and
stderr as a shell sees them) share one subprocess each and start no flow.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from billrun import commands, sql_shell, summary
from billrun.cli import main
from store.parquet_set import parquet_pointer
from store.snapshot import analyst_path
from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, write_drop

BIN = Path(sys.executable).parent

# The scenario's calls, with E2 at 70.125 minutes ($0.10/min: 7.0125): from counter 50 its
# first 50 minutes are free (to 100), the other 20.125 are paid.
USAGE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E1,A1,voice,US,2026-01-05 10:00:00,50,5.00
E2,A1,voice,US,2026-01-25 18:30:00,70.125,7.0125
E9,A1,voice,US,not a date,10,1.00
"""
# Loaded after January was finalized: 30 more minutes, $3.00, all past the free 100.
LATE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E3,A1,voice,US,2026-01-28 09:00:00,30,3.00
"""


AFTER_LOAD: dict[str, object] = {}  # what analysts saw right after the first load


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("issue21")
    drop = write_drop(tmp / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    db = tmp / "billrun.duckdb"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["load", str(drop), "--db", str(db), "--json"]) == 0
    AFTER_LOAD["load json"] = out.getvalue()
    out = io.StringIO()
    sql_shell.run_query(db, "SELECT source, count(*) AS n FROM rejected_rows GROUP BY 1", out)
    AFTER_LOAD["sql"] = out.getvalue()
    AFTER_LOAD["parquet"] = sorted(p.name for p in parquet_pointer(db).iterdir())
    assert main(["nightly", "--as-of", "2026-02-01", "--db", str(db)]) == 0  # January final
    late = write_drop(tmp / "late", usage=LATE)
    for key, argv in (("late load", ["load", str(late)]),
                      ("next night", ["nightly", "--as-of", "2026-02-02", "--json"]),
                      ("reprocess", ["reprocess", "--period", "2026-01"])):
        if key == "reprocess":
            with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
                AFTER_LOAD["late_usage"] = con.execute(
                    "SELECT period, account_id, event_id, bill_with FROM late_usage").fetchall()
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.MonkeyPatch.context() as patch:
            # 80 columns, as under cron or `| tee` (rich measures the real terminal otherwise)
            patch.setattr(commands, "console", Console(width=80))
            patch.setattr(summary, "console", Console(width=80))
            assert main([*argv, "--db", str(db)]) == 0
        AFTER_LOAD[key] = out.getvalue()
    return db


def _rows(text: str, first: str) -> list[list[str]]:
    """The cells of a rich table's rows whose first cell is `first`."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first:
            rows.append(cells)
    return rows


def test_explain_parts_add_up_and_amounts_read_as_people_read_them(
    billed: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "console", Console(width=400))
    capsys.readouterr()
    assert main(["explain", "--account", "A1", "--period", "2026-01", "--db", str(billed)]) == 0
    out = capsys.readouterr().out
    # no quantity as 130.000000 (the invoice's number, INV-00000001, has zeros, but no point)
    assert re.search(r"\.\d*000000", out) is None

    # E2's tier parts: 50 from counter 50 to 100 at 100 %, 20.125 from 100 to 120.125 at 0 %;
    # they add up to the event's 70.125 minutes and $7.0125.
    parts = _rows(out, "E2")
    header = next(line for line in out.splitlines() if "event_id" in line)
    names = [c.strip() for c in header.split("┃")[1:-1]]
    got = [dict(zip(names, row, strict=True)) for row in parts]
    assert [(p["tier_pct"], p["counter_from"], p["counter_to"], p["quantity"], p["amount"])
            for p in got] == [
        ("100.00", "50.00", "100.00", "50.00", "5.0000"),
        ("0.00", "100.00", "120.125", "20.125", "2.0125"),
    ]
    assert sum(Decimal(p["quantity"]) for p in got) == Decimal("70.125")
    assert sum(Decimal(p["amount"]) for p in got) == Decimal("7.0125")

    # The late call's adjustment: 30 more minutes; the usage line was 5.00 + 7.0125 = 12.0125,
    # billed 12.01, and is now 15.0125, 15.01: +3.00, its reason in dollars.
    adjustment = next(r for r in _rows(out, "usage") if "adjustment" in " ".join(r)
                      or "late" in " ".join(r))
    assert "30" in adjustment and "3.00" in adjustment
    assert any("billed 12.01, now 15.01 USD" in cell for cell in adjustment)


def test_report_refusals_are_exit_2_and_make_no_folder(
    billed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["report", "--period", "2030-01", "--db", str(billed)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("billrun: error: ") and err.endswith("no invoice for period 2030-01\n")
    missing = billed.parent / "missing"
    out = missing / "dir" / "x.html"
    assert main(["report", "--out", str(out), "--db", str(billed)]) == 2
    assert capsys.readouterr().err == f"billrun: error: --out {out}: no folder {out.parent}\n"
    assert not missing.exists()


def _script(*commands_: list[str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    return [
        subprocess.run([str(BIN / "billrun"), *argv], capture_output=True, text=True,
                       timeout=120, cwd=cwd, env={**os.environ, "COLUMNS": "80"})
        for argv in commands_
    ]


@pytest.mark.slow
def test_the_real_script_one_error_line_and_an_empty_load_warns(billed: Path) -> None:
    empty = billed.parent / "empty"
    empty.mkdir()
    # None of these starts a flow or a server: a second or two each.
    period, sql, load = _script(
        ["report", "--period", "2030-01", "--db", str(billed)],
        ["sql", "--db", str(billed), "SELEC 1"],
        ["load", str(empty), "--db", str(billed.parent / "other.duckdb")],
        cwd=billed.parent,
    )
    for done, code in ((period, 2), (sql, 2)):
        assert done.returncode == code, done.stderr
        assert done.stderr.startswith("billrun: error: ") and done.stderr.count("\n") == 1
    assert "ParserException" in sql.stderr
    assert load.returncode == 0, load.stderr
    assert load.stderr.startswith(f"billrun: warning: nothing to load: {empty} holds no")
    assert not (billed.parent / "other.duckdb").exists()  # nothing was written


# ---------------------------------------------------------------------------------------------
# Item 4: analysts see what exists


def test_a_load_publishes_its_rejected_rows_and_inputs(billed: Path) -> None:
    # Right after the first load, before any nightly: E9's bad date is in `billrun sql`.
    assert _rows(str(AFTER_LOAD["sql"]), "usage.csv") == [["usage.csv", "1"]]
    # A file per table, or a folder of partitions (the usage, by month).
    names = {str(n).removesuffix(".parquet") for n in AFTER_LOAD["parquet"]}
    for table in ("accounts", "assignments", "usage", "rejected_rows", "runs"):
        assert table in names, names
    assert "invoice_summary" not in names  # no views before the first billing run


def test_the_parquet_set_has_the_inputs_analysts_join_to(billed: Path) -> None:
    import polars as pl

    folder = parquet_pointer(billed)
    read = {name: pl.read_parquet(
        folder / f"{name}.parquet" if name != "usage" else folder / "usage") for name in (
        "accounts", "assignment_history", "usage", "catalog_main_products", "catalog_addons",
        "catalog_subscriptions", "catalog_fee_plans")}
    assert read["accounts"]["account_id"].to_list() == ["A1"]
    assert sorted(read["assignment_history"]["assignment_id"]) == ["AS_TV", "AS_V100"]
    assert sorted(read["usage"]["event_id"]) == ["E1", "E2", "E3"]  # E9 was rejected
    assert read["catalog_main_products"]["main_product_id"].to_list() == ["MP_BASIC"]
    assert sorted(read["catalog_addons"]["addon_id"]) == ["ADD_TV", "ADD_VOICE100",
                                                         "ADD_VOICE200"]
    assert sorted(read["catalog_fee_plans"]["fee_plan_id"]) == ["TV1", "V1"]


def test_tables_lists_no_internal_table(billed: Path) -> None:
    out = io.StringIO()
    sql_shell.shell(billed, stdin=io.StringIO(".tables\n"), out=out)
    listed = out.getvalue()
    assert "invoice_summary" in listed and "accounts" in listed
    assert "fingerprints" not in listed


def test_revenue_by_addon_net_is_the_buckets_plus_the_adjustments(billed: Path) -> None:
    import duckdb

    with duckdb.connect(str(analyst_path(billed)), read_only=True) as con:
        rows = con.execute(
            "SELECT addon_id, fees, usage, discounts, adjustments, net FROM revenue_by_addon "
            "WHERE period = '2026-01' ORDER BY addon_id"
        ).fetchall()
    d = Decimal
    # TV: 10.00 activation + 30.00 x 21/31 = 20.32. Voice: 5.00 fee; usage 5.00 + 7.0125 =
    # 12.01 billed, the first 100 minutes (10.00) free; the late call's +3.00 adjustment.
    assert rows == [
        ("ADD_TV", d("30.32"), None, None, None, d("30.32")),
        ("ADD_VOICE100", d("5.00"), d("12.01"), d("-10.00"), d("3.00"), d("10.01")),
    ]


# ---------------------------------------------------------------------------------------------
# Item 1: late usage is never silent


def test_late_usage_is_counted_by_the_load_and_the_night_until_reprocessed(billed: Path) -> None:
    # E3 is dated 2026-01-28, in January, final since the night of Feb 1: no night bills it.
    line = ("late usage 2026-01: 1 event(s) in a final period, not billed yet: "
            "billrun reprocess --period 2026-01")
    assert line in " ".join(str(AFTER_LOAD["late load"]).split())
    night = json.loads(str(AFTER_LOAD["next night"]))  # nightly --json
    assert night["late_usage"] == [
        {"period": "2026-01", "events": 1, "bill_with": "billrun reprocess --period 2026-01"}]
    assert AFTER_LOAD["late_usage"] == [
        ("2026-01", "A1", "E3", "billrun reprocess --period 2026-01")]
    # The reprocess billed it (the +3.00 adjustment above): nothing is waiting any more.
    with duckdb.connect(str(analyst_path(billed)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM late_usage").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------
# Item 3: readable anywhere, --json for scripts


def test_summaries_fit_80_columns_in_the_business_words(billed: Path) -> None:
    shown = str(AFTER_LOAD["reprocess"])  # printed to a pipe: 80 columns
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    assert "…" not in shown
    # The analyst copy's path is whole once its folded pieces are joined.
    joined = "".join(line.strip("│ ").strip() for line in shown.splitlines())
    assert str(analyst_path(billed)).replace(" ", "") in joined.replace(" ", "")
    for words in ("invoices whose lines changed", "discount counters updated",
                  "debit notes issued"):
        assert words in shown
    for code in ("charge groups rewritten", "parcels rewritten", "drafts marked"):
        assert code not in shown
    night = json.loads(str(AFTER_LOAD["next night"]))
    assert (night["command"], night["periods"], night["drafts"], night["finalized"]) == (
        "nightly", ["2026-02"], 1, 0)


def test_explain_at_80_columns_prints_one_block_per_event(
    billed: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "console", Console(width=80))
    capsys.readouterr()
    assert main(["explain", "--account", "A1", "--period", "2026-01", "--db", str(billed)]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines())
    # E1, E2 in two tier parts, E3: four blocks of 13 fields, each field whole on its line.
    events = out.split("Discounted usage events")[1].split("Rollover parcels")[0]
    assert events.count("-[ ") == 4
    assert "quantity          │ 20.125" in events and "event_id          │ E3" in events


def test_config_json_gives_each_value_and_its_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BILLRUN_MEMORY_GB", raising=False)
    capsys.readouterr()
    assert main(["config", "--json", "--db", "books.duckdb"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["file"] is None
    assert doc["settings"]["memory_gb"] == {"value": 8.0, "source": "default"}
    assert doc["settings"]["db"]["source"] == "flag --db"


@pytest.mark.parametrize(("cron", "now", "due"), [
    # 02:00 UTC every night: at 15:00 UTC the next is tomorrow's; at 01:59 today's.
    ("0 2 * * *", datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc), datetime(2026, 12, 8, 2, 0)),
    ("0 2 * * *", datetime(2026, 12, 7, 1, 59, tzinfo=timezone.utc), datetime(2026, 12, 7, 2, 0)),
    # A clock in another zone is read as the same instant: 03:30 at UTC+2 is 01:30 UTC.
    ("0 2 * * *", datetime(2026, 12, 7, 3, 30, tzinfo=timezone(timedelta(hours=2))),
     datetime(2026, 12, 7, 2, 0)),
    ("@daily", datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc), datetime(2027, 1, 1, 0, 0)),
])
def test_serve_says_when_the_next_run_is_in_utc(cron: str, now: datetime, due: datetime) -> None:
    from flows.serve import next_run_at

    assert next_run_at(cron, now) == due.replace(tzinfo=timezone.utc)


def test_load_json_is_one_document_of_counts(billed: Path) -> None:
    doc = json.loads(str(AFTER_LOAD["load json"]))
    files = {f["kind"]: (f["rows_in"], f["loaded"], f["rejected"]) for f in doc["files"]}
    # 1 account, 2 assignments, 3 usage rows of which E9 (no date) is rejected.
    assert files == {"accounts": (1, 1, 0), "assignments": (2, 2, 0), "usage": (3, 2, 1)}
    assert (doc["command"], doc["rows_in"], doc["loaded"], doc["rejected"]) == (
        "load", 6, 5, 1)
    assert doc["late_usage"] == [] and doc["analyst_copy"] == str(analyst_path(billed))

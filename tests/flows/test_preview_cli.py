"""`billrun preview` on a real billed DuckDB file (SPEC §8.4), through the real CLI.

The hand-made scenario (tests/flows/conftest.py), billed as of 2026-02-15: January final,
February a draft. A1 holds AS_TV (TV1, 30.00 a month, from 2026-01-11) and AS_V100 (V1, 5.00
a month, 100 free US minutes, priority 20, from 2026-01-01). Billing day 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.preview import AddAddon, EndAssignment
from billrun.preview import PreviewDoc, json_schema, preview_account
from flows.load import load_flow
from flows.nightly import nightly_flow

AS_OF = date(2026, 2, 15)


@pytest.fixture(scope="module")
def billed(module_scenario: dict[str, Path]) -> Path:
    db = module_scenario["tmp"] / "billed.duckdb"
    load_flow(str(module_scenario["drop"]), str(db))
    nightly_flow(as_of=AS_OF, db=str(db))
    return db


def preview_cli(db: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billrun.cli", "preview", "--db", str(db), "--account", "A1",
         *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replacing_and_ending_priced_by_hand_as_json_and_nothing_written(billed: Path) -> None:
    before = digest(billed)
    got = preview_cli(billed, "--add", "addon=ADD_VOICE200,start=2026-02-11",
                      "--end", "assignment=AS_TV,on=2026-02-21", "--json")
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    PreviewDoc.model_validate(doc)  # the documented schema (docs/preview.schema.json)
    february, march = doc["periods"]
    # AS_V100 is replaced on 02-11 by the later same-priority add-on: 5 × 18/28 = -3.21.
    # AS_TV ends 02-21: 30 × 8/28 = -8.57. ADD_VOICE200 has no fee.
    assert (february["period"], february["total_before"]) == ("2026-02", "35.00")
    assert february["difference"] == "-11.78"
    credits = sorted(line["after"] for line in february["lines"] if line["line_type"] == "credit")
    assert credits == ["-3.21", "-8.57"]
    assert (march["total_before"], march["total_after"]) == ("35.00", "0.00")
    outcomes = {(v["assignment_id"], v["outcome"]) for v in doc["verdicts"]}
    assert ("AS_V100", "replaced") in outcomes and ("preview-1", "eligible") in outcomes
    assert doc["items"][0]["assignment_id"] == "preview-1"
    assert digest(billed) == before  # a preview writes nothing


def test_the_table_fits_80_columns_and_names_an_ineligible_add_on(billed: Path) -> None:
    # SUB_TV is once per account: a second TV pack is refused, and the reason says why.
    got = preview_cli(billed, "--add", "addon=ADD_TV,plan=TV1,start=2026-02-20", columns=80)
    assert got.returncode == 0, got.stderr
    assert max(len(line) for line in got.stdout.splitlines()) <= 80
    assert "ineligible" in got.stdout and "once-per-account" in got.stdout.replace("\n", " ")


@pytest.mark.parametrize("args, says", [
    (["--account-x"], None),
    (["--end", "assignment=AS_TV,on=2026-01-20"], "finalized period"),
    (["--end", "assignment=NOPE,on=2026-02-20"], "no assignment 'NOPE'"),
    (["--add", "addon=ADD_NOPE,start=2026-02-20"], "unknown add-on 'ADD_NOPE'"),
    (["--change", "assignment=AS_TV,from=2026-02-20"], "plan=, quantity= or both"),
    (["--end", "assignment=AS_TV,on=20-02-2026"], "is not a date"),
])
def test_bad_items_are_exit_2_with_one_line(billed: Path, args: list[str],
                                            says: str | None) -> None:
    got = preview_cli(billed, *args)
    assert got.returncode == 2
    if says:
        assert len(got.stderr.strip().splitlines()) == 1 and says in got.stderr
    assert "Traceback" not in got.stderr


def test_an_unknown_account_is_exit_2(billed: Path) -> None:
    got = subprocess.run(
        [sys.executable, "-m", "billrun.cli", "preview", "--db", str(billed), "--account",
         "NOBODY"], capture_output=True, text=True, timeout=120)
    assert got.returncode == 2 and "unknown account 'NOBODY'" in got.stderr


def test_no_change_as_of_the_night_equals_the_stored_draft(billed: Path) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        shown = preview_account(con, "A1", [], ["2026-02"], AS_OF)
        stored = con.execute(
            "SELECT line_type, assignment_id, CAST(amount * 100 AS BIGINT) FROM charges "
            "WHERE account_id = 'A1' AND period = '2026-02' ORDER BY ALL").fetchall()
    lines = shown.preview.periods[0].lines
    assert sorted(lines.select("line_type", "assignment_id", "amount_before").rows()) == stored
    assert lines["difference"].to_list() == [0] * lines.height


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(end_in=st.integers(1, 12), start_in=st.integers(1, 12))
def test_a_preview_equals_loading_the_same_change_on_a_copy(
    billed: Path, copy_db: object, tmp_path_factory: pytest.TempPathFactory, end_in: int,
    start_in: int,
) -> None:
    """Ending AS_TV and adding ADD_VOICE200 in February, previewed as of the night, gives the
    draft a real load and nightly of the same rows gives (on a copy of the database)."""
    end, start = AS_OF - timedelta(days=end_in), AS_OF - timedelta(days=start_in)
    with duckdb.connect(str(billed), read_only=True) as con:
        shown = preview_account(con, "A1", [EndAssignment("AS_TV", end),
                                            AddAddon("ADD_VOICE200", None, start)],
                                ["2026-02"], AS_OF)
    tmp = tmp_path_factory.mktemp("real")
    db = copy_db(billed, tmp / "copy.duckdb")  # type: ignore[operator]
    drop = tmp / "drop"
    drop.mkdir()
    (drop / "assignments.csv").write_text(
        "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity\n"
        f"AS_TV,A1,ADD_TV,TV1,2026-01-11,{end},2026-01-10 09:00:00,1\n"
        f"preview-1,A1,ADD_VOICE200,,{start},,2026-02-14 09:00:00,1\n")
    load_flow(str(drop), str(db))
    nightly_flow(as_of=AS_OF, db=str(db))
    with duckdb.connect(str(db), read_only=True) as con:
        real = con.execute(
            "SELECT line_type, assignment_id, CAST(amount * 100 AS BIGINT) FROM charges "
            "WHERE account_id = 'A1' AND period = '2026-02' ORDER BY ALL").fetchall()
    after = shown.preview.periods[0].lines.filter(pl.col("amount_after").is_not_null())
    assert sorted(after.select("line_type", "assignment_id", "amount_after").rows()) == real


def test_the_documented_json_schema_is_the_one_printed() -> None:
    documented = Path(__file__).resolve().parents[2] / "docs" / "preview.schema.json"
    assert json.loads(documented.read_text()) == json_schema()


def test_adding_30_monthly_from_june_11_with_its_activation_fee(billed: Path) -> None:
    # TV1 is 30.00 a month with a 10.00 activation fee, once per account: AS_TV ends first.
    # June: 30 x 20/30 = 20.00 and the activation fee 10.00 (SPEC §4's example).
    got = preview_cli(billed, "--end", "assignment=AS_TV,on=2026-05-01", "--add",
                      "addon=ADD_TV,plan=TV1,start=2026-06-11", "--periods", "2026-06", "--json")
    assert got.returncode == 0, got.stderr
    june = json.loads(got.stdout)["periods"][0]
    added = sorted((line["line_type"], line["after"]) for line in june["lines"]
                   if line["assignment_id"] == "preview-1")
    assert added == [("activation", "10.00"), ("recurring", "20.00")]

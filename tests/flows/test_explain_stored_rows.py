"""`billrun explain` for a period that stores no row of an assignment (docs/RULES.md "Stored
rows"): it shows the assignment's rows of the latest earlier period, which say the same."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from billrun.explain import explain_frames
from flows.load import load_flow
from flows.nightly import nightly_flow
from tests.flows import conftest
from tests.flows.conftest import ACCOUNTS, CATALOG, USAGE, write_drop

# The 100-minute add-on ends on Feb 10: active in January and February, expired from March.
ASSIGNMENTS = conftest.ASSIGNMENTS.replace(
    "AS_V100,A1,ADD_VOICE100,V1,2026-01-01,,", "AS_V100,A1,ADD_VOICE100,V1,2026-01-01,2026-02-10,"
)
EXPIRED = "add-on is expired from its end date"


def test_expired_addon_is_stored_once_and_explained_after(tmp_path: Path) -> None:
    assert "2026-02-10" in ASSIGNMENTS
    drop = write_drop(tmp_path / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    db = tmp_path / "billrun.duckdb"
    load_flow(str(drop), str(db))
    nightly_flow(as_of=date(2026, 4, 15), db=str(db))
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(
            "SELECT period, count(*) FROM decisions WHERE assignment_id = 'AS_V100' "
            "GROUP BY period ORDER BY period"
        ).fetchall()
        march = explain_frames(con, "A1", "2026-03")["decisions"]
        april = explain_frames(con, "A1", "2026-04")["decisions"]
        # A period no run billed has no decisions to stand for.
        later = explain_frames(con, "A1", "2026-06")["decisions"]
    # Eligible and the period state in January to March; nothing new to say in April.
    assert stored == [("2026-01", 2), ("2026-02", 2), ("2026-03", 2)]
    v100 = [r for r in april.rows(named=True) if r["assignment_id"] == "AS_V100"]
    assert {(r["rule"], r["outcome"], r["decided_in"]) for r in v100} == {
        ("add-on meets every eligibility condition", "eligible", "2026-03"),
        (EXPIRED, "expired", "2026-03"),
    }
    assert april.drop("decided_in").filter(
        april["assignment_id"] == "AS_V100"
    ).equals(march.drop("decided_in").filter(march["assignment_id"] == "AS_V100"))
    tv = [r for r in april.rows(named=True) if r["assignment_id"] == "AS_TV"]
    assert {r["decided_in"] for r in tv} == {"2026-04"} and "active" in {r["outcome"] for r in tv}
    assert later.height == 0


def test_addon_loaded_after_its_periods_were_final_is_recomputed(tmp_path: Path) -> None:
    """A voice add-on loaded in April for January (its whole life in final periods) has no
    stored row; explain of April works its rows out from the stored inputs."""
    drop = write_drop(tmp_path / "drop1", catalog=CATALOG, accounts=ACCOUNTS,
                      assignments=ASSIGNMENTS, usage=USAGE)
    db = tmp_path / "billrun.duckdb"
    load_flow(str(drop), str(db))
    nightly_flow(as_of=date(2026, 4, 15), db=str(db))
    late = write_drop(tmp_path / "drop2", assignments=(
        "assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity\n"
        "AS_OLD,A1,ADD_VOICE200,,2026-01-05,2026-01-20,2026-04-16 08:00:00,1\n"
    ))
    load_flow(str(late), str(db))
    nightly_flow(as_of=date(2026, 4, 16), db=str(db))
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(
            "SELECT count(*) FROM decisions WHERE assignment_id = 'AS_OLD'"
        ).fetchone()
        april = explain_frames(con, "A1", "2026-04")["decisions"]
    assert stored == (0,)
    old = april.filter(april["assignment_id"] == "AS_OLD")
    assert set(old["decided_in"]) == {"recomputed"}
    assert (EXPIRED, "expired") in old.select("rule", "outcome").rows()
    assert set(april.filter(april["assignment_id"] != "AS_OLD")["decided_in"]) <= {
        "2026-03", "2026-04"
    }

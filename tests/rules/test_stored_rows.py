"""The decision rows a run stores (`decide(..., stored_only=True)`, docs/RULES.md "Stored rows").

A period leaves out an assignment's rows only when they would repeat, word for word, its rows of
the latest earlier period that stores them: so every period's full rows can be read back from
the stored ones (what `billrun explain` does).
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
from hypothesis import given, settings
from rules_cases import accounts_frame, assignments_frame, locks_frame, sample_catalog
from test_property import PROPERTY, cases, chain_cases

from pipeline.periods import periods_between
from rules import decide

CATALOG = sample_catalog()
# From before any drawn start (2026-01-20 on) to after any drawn end.
PERIODS = periods_between("2025-12", "2026-08")
ROW = ["rule", "outcome", "reason", "effective_start", "effective_end"]


def _both(case: tuple) -> tuple[pl.DataFrame, pl.DataFrame]:
    accounts, assignments, policy, locks = case
    lock_frame = locks_frame([(k, v.isoformat()) for k, v in locks.items()]) if locks else None
    args = (CATALOG, accounts_frame(accounts), assignments_frame(assignments), PERIODS, policy)
    full = decide(*args, locks=lock_frame).decisions
    stored = decide(*args, locks=lock_frame, stored_only=True).decisions
    return full, stored


def _read_back(stored: pl.DataFrame, period: str) -> pl.DataFrame:
    """The rows of `period` as explain reads them: each assignment's latest stored rows."""
    upto = stored.filter(pl.col("period") <= period)
    latest = upto.group_by("assignment_id").agg(pl.col("period").max().alias("latest"))
    return upto.join(latest, on="assignment_id").filter(pl.col("period") == pl.col("latest"))


def check(case: tuple) -> None:
    full, stored = _both(case)
    assert stored.join(full, on=list(full.columns), how="anti", nulls_equal=True).height == 0
    for period in PERIODS:
        want = full.filter(pl.col("period") == period).select("assignment_id", *ROW)
        got = _read_back(stored, period).select("assignment_id", *ROW)
        assert sorted(got.rows(), key=str) == sorted(want.rows(), key=str), period
    # Each period alone stores what it stores within the run of every period (bill's case).
    accounts, assignments, policy, locks = case
    lock_frame = locks_frame([(k, v.isoformat()) for k, v in locks.items()]) if locks else None
    alone = decide(CATALOG, accounts_frame(accounts), assignments_frame(assignments),
                   ["2026-04"], policy, locks=lock_frame, stored_only=True).decisions
    assert alone.equals(stored.filter(pl.col("period") == "2026-04"))


# 25 derandomized examples each: a case decides every period three times (full, stored and
# one period alone), so 150 and 60 made this file one of the suite's costliest.
STORED = settings(PROPERTY, max_examples=25)


@STORED
@given(cases())
def test_stored_rows_read_back_to_every_periods_rows(case):
    check(case)


@STORED
@given(chain_cases())
def test_stored_rows_of_competing_chains_read_back(case):
    check(case)


def test_an_addon_is_told_until_its_first_expired_period():
    """Active from Feb 1 to Mar 10 (billing day 1): stored in Feb, Mar and Apr (expired), not
    later; one ineligible from Feb 15 (no fee plan): stored in Jan to Mar, not later."""
    accounts = accounts_frame([{
        "account_id": "A0", "currency": "USD", "main_product_id": "MP_PLUS", "billing_day": 1,
        "status": "active", "opened_on": date(2026, 1, 1), "closed_on": None,
        "effective_from": None}])
    assignments = assignments_frame([
        {"assignment_id": "S0", "account_id": "A0", "addon_id": "ADD_TV", "fee_plan_id": "TV1",
         "start_date": date(2026, 2, 1), "end_date": date(2026, 3, 10),
         "assigned_at": datetime(2026, 1, 1), "quantity": 1},
        {"assignment_id": "S1", "account_id": "A0", "addon_id": "ADD_TV", "fee_plan_id": None,
         "start_date": date(2026, 2, 15), "end_date": None,
         "assigned_at": datetime(2026, 1, 2), "quantity": 1},
    ])
    periods = periods_between("2026-01", "2026-06")
    stored = decide(CATALOG, accounts, assignments, periods, "replace", stored_only=True).decisions
    told = stored.group_by("assignment_id").agg(pl.col("period").unique().sort())
    assert dict(told.rows()) == {
        "S0": ["2026-01", "2026-02", "2026-03", "2026-04"],
        "S1": ["2026-01", "2026-02", "2026-03"],
    }
    april = stored.filter((pl.col("assignment_id") == "S0") & (pl.col("period") == "2026-04"))
    assert ("add-on is expired from its end date", "expired") in april.select(
        "rule", "outcome").rows()
    full = decide(CATALOG, accounts, assignments, periods, "replace").decisions
    # Left out: S0 in May and June (eligible and expired), S1 (ineligible) in April to June.
    assert full.height == stored.height + 2 * 2 + 3

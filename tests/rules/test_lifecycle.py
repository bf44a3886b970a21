"""Life cycle (SPEC §3): states per period, what ends an add-on, and the activation-date lock."""

from __future__ import annotations

import polars as pl
import pytest
from rules_cases import (
    account,
    accounts_frame,
    assignment,
    assignments_frame,
    d,
    locks_frame,
    sample_catalog,
)

from rules import decide
from rules import lifecycle as lc

CATALOG = sample_catalog()


def rows_of(result, assignment_id: str, period: str) -> dict[str, dict]:
    """rule -> decision row of one assignment in one period."""
    frame = result.decisions.filter(
        (pl.col("assignment_id") == assignment_id) & (pl.col("period") == period)
    )
    return {r["rule"]: r for r in frame.to_dicts()}


def life(result, assignment_id: str) -> dict:
    """The settled life cycle of one assignment."""
    return result.lifecycles.filter(pl.col("assignment_id") == assignment_id).to_dicts()[0]


@pytest.mark.parametrize(
    ("period", "rule", "outcome", "effective", "reason"),
    [
        ("2026-02", lc.PENDING, "pending", (None, None),
         "pending: it starts on 2026-03-20, after this period"),
        ("2026-03", lc.ACTIVE, "active", ("2026-03-20", "2026-04-15"),
         "active in this period from 2026-03-20 until 2026-04-15 (exclusive)"),
        ("2026-04", lc.ACTIVE, "active", ("2026-04-15", "2026-05-02"),
         "active in this period from 2026-04-15 until 2026-05-02 (exclusive)"),
        ("2026-05", lc.EXPIRED, "expired", (None, None),
         "expired: it ended on 2026-05-02, before this period"),
    ],
)
def test_state_in_each_period_of_an_account_billed_on_the_15th(
    period, rule, outcome, effective, reason
):
    result = decide(CATALOG, accounts_frame([account(billing_day=15)]),
                    assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-03-20",
                                                  end="2026-05-02")]),
                    ["2026-02", "2026-03", "2026-04", "2026-05"], "replace")
    rows = rows_of(result, "S1", period)
    assert set(rows) == {"add-on meets every eligibility condition", rule}
    row = rows[rule]
    assert row["outcome"] == outcome and row["reason"] == reason
    start, end = effective
    assert (row["effective_start"], row["effective_end"]) == (
        d(start) if start else None, d(end) if end else None)


def test_an_open_ended_add_on_is_active_to_the_end_of_the_period():
    result = decide(CATALOG, accounts_frame([account()]),
                    assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-01-10")]),
                    ["2026-03"], "replace")
    row = rows_of(result, "S1", "2026-03")[lc.ACTIVE]
    assert (row["effective_start"], row["effective_end"]) == (d("2026-03-01"), d("2026-04-01"))
    assert life(result, "S1")["eff_end"] is None and life(result, "S1")["end_reason"] is None


def test_a_main_product_change_ends_the_add_ons_the_new_product_does_not_offer():
    accounts = [account(product="MP_PLUS"), account(product="MP_BIZ", effective_from="2026-03-10")]
    result = decide(CATALOG, accounts_frame(accounts), assignments_frame([
        assignment("TV", "ADD_TV", "TV1", "2026-02-05"),
        assignment("SEATS", "ADD_SEATS", "SEAT1", "2026-02-05"),
    ]), ["2026-03", "2026-04"], "replace")
    tv = life(result, "TV")
    assert (tv["eff_end"], tv["end_reason"]) == (d("2026-03-10"), "main_product_change")
    row = rows_of(result, "TV", "2026-03")[lc.PRODUCT_CHANGE]
    assert row["outcome"] == "active"
    assert row["reason"] == ("the main product changes to MP_BIZ on 2026-03-10 and it does not "
                             "offer ADD_TV: the add-on ends that day")
    assert rows_of(result, "TV", "2026-04")[lc.PRODUCT_CHANGE]["outcome"] == "expired"
    assert life(result, "SEATS")["eff_end"] is None
    assert lc.PRODUCT_CHANGE not in rows_of(result, "SEATS", "2026-03")


def test_the_first_product_change_that_drops_the_add_on_ends_it():
    accounts = [account(product="MP_PLUS"),
                account(product="MP_BASIC", effective_from="2026-03-05"),
                account(product="MP_BIZ", effective_from="2026-03-12"),
                account(product="MP_PLUS", effective_from="2026-03-20")]
    result = decide(CATALOG, accounts_frame(accounts),
                    assignments_frame([assignment("TV", "ADD_TV", "TV1", "2026-02-05")]),
                    ["2026-03"], "replace")
    assert life(result, "TV")["eff_end"] == d("2026-03-12")


def test_an_end_date_before_the_product_change_is_what_ends_the_add_on():
    accounts = [account(product="MP_PLUS"), account(product="MP_BIZ", effective_from="2026-03-10")]
    result = decide(CATALOG, accounts_frame(accounts), assignments_frame([
        assignment("TV", "ADD_TV", "TV1", "2026-02-05", end="2026-03-08")]), ["2026-03"], "replace")
    assert (life(result, "TV")["eff_end"], life(result, "TV")["end_reason"]) == (
        d("2026-03-08"), "until")
    assert lc.PRODUCT_CHANGE not in rows_of(result, "TV", "2026-03")


def test_every_add_on_ends_the_day_its_account_closes():
    result = decide(CATALOG, accounts_frame([account(status="closed", closed_on="2026-03-20")]),
                    assignments_frame([assignment("TV", "ADD_TV", "TV1", "2026-02-05"),
                                       assignment("INTL", "ADD_INTL", None, "2026-02-05")]),
                    ["2026-03"], "replace")
    for assignment_id, addon in (("TV", "ADD_TV"), ("INTL", "ADD_INTL")):
        assert (life(result, assignment_id)["eff_end"], life(result, assignment_id)["end_reason"]) \
            == (d("2026-03-20"), "account_closed")
        row = rows_of(result, assignment_id, "2026-03")[lc.ACCOUNT_CLOSED]
        assert row["outcome"] == "active"
        assert row["reason"] == (f"the account closes on 2026-03-20: every add-on, {addon} "
                                 "included, ends that day")
        assert row["effective_end"] == d("2026-03-20")


def test_a_closed_status_without_date_closes_from_that_row():
    accounts = [account(), account(status="closed", effective_from="2026-03-15")]
    result = decide(CATALOG, accounts_frame(accounts),
                    assignments_frame([assignment("TV", "ADD_TV", "TV1", "2026-02-05")]),
                    ["2026-03"], "replace")
    assert life(result, "TV")["end_reason"] == "account_closed"
    assert life(result, "TV")["eff_end"] == d("2026-03-15")


def test_the_customers_own_end_wins_a_tie_with_the_closure():
    result = decide(CATALOG, accounts_frame([account(status="closed", closed_on="2026-03-20")]),
                    assignments_frame([assignment("TV", "ADD_TV", "TV1", "2026-02-05",
                                                  end="2026-03-20")]), ["2026-03"], "replace")
    assert life(result, "TV")["end_reason"] == "until"


def test_activation_date_lock_across_two_runs():
    accounts = accounts_frame([account()])
    first_run = assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-03-10")])
    billed = decide(CATALOG, accounts, first_run, ["2026-03"], "replace")
    assert billed.decisions.filter(pl.col("outcome") == "locked").height == 0
    # The store keeps, for each add-on active in a billed period, the start it was billed with.
    locks = billed.lifecycles.filter(pl.col("billable")).select(
        "assignment_id", pl.col("start_date").alias("locked_start")
    )
    assert locks.rows() == [("S1", d("2026-03-10"))]

    moved = assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-03-20")])
    second = decide(CATALOG, accounts, moved, ["2026-03"], "replace", locks=locks)
    row = rows_of(second, "S1", "2026-03")[lc.LOCKED]
    assert row["outcome"] == "locked"
    assert row["reason"] == ("the activation date 2026-03-10 was active in a billed period: the "
                             "update to 2026-03-20 is refused and 2026-03-10 is kept")
    assert life(second, "S1")["start_date"] == d("2026-03-10")
    assert rows_of(second, "S1", "2026-03")[lc.ACTIVE]["effective_start"] == d("2026-03-10")

    same = decide(CATALOG, accounts, first_run, ["2026-03"], "replace", locks=locks)
    assert lc.LOCKED not in rows_of(same, "S1", "2026-03")
    assert same.lifecycles.equals(billed.lifecycles)


def test_a_locked_start_is_used_for_eligibility():
    accounts = accounts_frame([account(product="MP_BASIC"),
                               account(product="MP_BIZ", effective_from="2026-03-15")])
    moved = assignments_frame([assignment("S1", "ADD_TV", "TV1", "2026-03-20")])
    result = decide(CATALOG, accounts, moved, ["2026-03"], "replace",
                    locks=locks_frame([("S1", "2026-03-02")]))
    assert "add-on meets every eligibility condition" in rows_of(result, "S1", "2026-03")
    assert life(result, "S1")["eff_end"] == d("2026-03-15")


def test_new_locks_are_the_billable_starts_already_active_on_the_as_of_date() -> None:
    """SPEC §3: once an activation date was active in a billed period it may no longer move."""
    lifecycles = pl.DataFrame({
        "assignment_id": ["ON", "LATER", "IDLE", "TODAY"],
        "start_date": [d("2026-01-05"), d("2026-04-01"), d("2026-01-05"), d("2026-03-10")],
        "eff_start": [d("2026-01-05"), d("2026-04-01"), d("2026-01-05"), d("2026-03-10")],
        "billable": [True, True, False, True],
    })
    # As of 03-10: ON started before it, TODAY on it; LATER starts after; IDLE is not billed.
    locks = lc.new_locks(lifecycles, d("2026-03-10"))
    assert locks.rows() == [("ON", d("2026-01-05")), ("TODAY", d("2026-03-10"))]
    assert locks.columns == ["assignment_id", "locked_start"]

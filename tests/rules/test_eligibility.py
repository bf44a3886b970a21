"""Eligibility rules (SPEC §3), one hand-made case each, outcome and reason from the spec."""

from __future__ import annotations

import polars as pl
import pytest
from rules_cases import account, accounts_frame, assignment, assignments_frame, sample_catalog

from rules import decide
from rules import eligibility as el

CATALOG = sample_catalog()
PERIOD = "2026-03"


def rows_of(result, assignment_id: str) -> dict[str, tuple[str, str]]:
    """rule -> (outcome, reason) of one assignment in PERIOD."""
    frame = result.decisions.filter(
        (pl.col("assignment_id") == assignment_id) & (pl.col("period") == PERIOD)
    )
    return {r["rule"]: (r["outcome"], r["reason"]) for r in frame.to_dicts()}


def run(accounts: list[dict], assignments: list[dict], policy: str = "replace"):
    """decide over PERIOD with the sample catalog."""
    return decide(CATALOG, accounts_frame(accounts), assignments_frame(assignments), [PERIOD],
                  policy)


@pytest.mark.parametrize(
    ("acc", "asg", "rule", "reason_part"),
    [
        pytest.param(account(product="MP_BASIC"), assignment("S1", "ADD_ROAM", "R12", "2026-03-02"),
                     el.AVAILABLE, "not in the available add-ons of main product MP_BASIC",
                     id="not-offered-by-main-product"),
        pytest.param(account(opened="2026-03-10"), assignment("S1", "ADD_TV", "TV1", "2026-03-02"),
                     el.AVAILABLE, "before the account has a main product",
                     id="account-not-open-yet"),
        pytest.param(account(status="closed", closed_on="2026-03-01"),
                     assignment("S1", "ADD_TV", "TV1", "2026-03-02"),
                     el.NOT_CLOSED, "closed at the activation date", id="account-closed"),
        pytest.param(account(), assignment("S1", "ADD_TV", "V1", "2026-03-02"),
                     el.FEE_PLAN, "fee plan V1 is not a plan of subscription SUB_TV",
                     id="fee-plan-of-another-subscription"),
        pytest.param(account(), assignment("S1", "ADD_TV", None, "2026-03-02"),
                     el.FEE_PLAN, "brings subscription SUB_TV but the assignment has no fee plan",
                     id="fee-plan-missing"),
        pytest.param(account(), assignment("S1", "ADD_INTL", "V1", "2026-03-02"),
                     el.FEE_PLAN, "ADD_INTL has no subscription",
                     id="fee-plan-without-subscription"),
        pytest.param(account(currency="EUR"), assignment("S1", "ADD_TV", "TV1", "2026-03-02"),
                     el.CURRENCY, "fee plan TV1 is in USD but the account bills in EUR",
                     id="currency-mismatch"),
    ],
)
def test_each_failed_check_makes_the_assignment_ineligible(acc, asg, rule, reason_part):
    result = run([acc], [asg])
    rows = rows_of(result, "S1")
    assert set(rows) == {rule}
    outcome, reason = rows[rule]
    assert outcome == "ineligible"
    assert reason_part in reason
    assert not result.lifecycles["billable"][0]


@pytest.mark.parametrize(
    ("asg", "reason_part"),
    [
        (assignment("S1", "ADD_TV", "TV1", "2026-03-02"), "fee plan TV1 of SUB_TV is in USD"),
        (assignment("S1", "ADD_INTL", None, "2026-03-02"), "offers ADD_INTL and the account is"),
    ],
    ids=["with-subscription", "without-subscription"],
)
def test_an_assignment_that_meets_every_condition_is_eligible(asg, reason_part):
    result = run([account()], [asg])
    rows = rows_of(result, "S1")
    assert rows[el.ELIGIBLE][0] == "eligible" and reason_part in rows[el.ELIGIBLE][1]
    assert result.lifecycles["billable"][0]


def test_every_failed_check_is_recorded_not_only_the_first():
    result = run([account(currency="EUR", status="closed", closed_on="2026-02-01")],
                 [assignment("S1", "ADD_SEATS", "SEAT1", "2026-03-02")])
    assert set(rows_of(result, "S1")) == {el.NOT_CLOSED, el.CURRENCY}


def test_the_main_product_is_the_one_the_account_has_at_activation():
    accounts = [account(product="MP_BASIC"),
                account(product="MP_BIZ", effective_from="2026-03-10")]
    result = run(accounts, [assignment("EARLY", "ADD_ROAM", "R12", "2026-03-09"),
                            assignment("LATE", "ADD_ROAM", "R12", "2026-03-10")])
    assert rows_of(result, "EARLY")[el.AVAILABLE][0] == "ineligible"
    assert rows_of(result, "LATE")[el.ELIGIBLE][0] == "eligible"


def test_an_account_closing_after_activation_does_not_make_it_ineligible():
    result = run([account(status="closed", closed_on="2026-03-20")],
                 [assignment("S1", "ADD_TV", "TV1", "2026-03-19")])
    assert rows_of(result, "S1")[el.ELIGIBLE][0] == "eligible"


def test_once_per_account_the_assignment_made_first_keeps_the_subscription():
    result = run([account()], [
        assignment("B", "ADD_TV", "TV1", "2026-03-01", assigned_at="2026-02-02T00:00:00"),
        assignment("A", "ADD_TV", "TV1", "2026-03-05", assigned_at="2026-02-01T00:00:00"),
    ])
    assert rows_of(result, "A")[el.ELIGIBLE][0] == "eligible"
    outcome, reason = rows_of(result, "B")[el.ONCE_PER_ACCOUNT]
    assert outcome == "ineligible"
    assert reason == ("subscription SUB_TV applies once per account and is already active on it "
                      "through A (ADD_TV), assigned earlier")


def test_once_per_account_ties_on_assigned_at_go_to_the_lower_assignment_id():
    result = run([account()], [assignment("Z", "ADD_TV", "TV1", "2026-03-01"),
                               assignment("Y", "ADD_TV", "TV1", "2026-03-05")])
    assert el.ELIGIBLE in rows_of(result, "Y")
    assert rows_of(result, "Z")[el.ONCE_PER_ACCOUNT][0] == "ineligible"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (assignment("A", "ADD_TV", "TV1", "2026-03-01", end="2026-03-10"),
         assignment("B", "ADD_TV", "TV1", "2026-03-10", assigned_at="2026-01-02T00:00:00")),
        (assignment("A", "ADD_SEATS", "SEAT1", "2026-03-01"),
         assignment("B", "ADD_SEATS", "SEAT6", "2026-03-02", assigned_at="2026-01-02T00:00:00")),
        (assignment("A", "ADD_VOICE100", "V1", "2026-03-01"),
         assignment("B", "ADD_TV", "TV1", "2026-03-02", assigned_at="2026-01-02T00:00:00")),
    ],
    ids=["no-overlap", "once-per-account-false", "different-subscriptions"],
)
def test_assignments_that_do_not_compete_are_both_eligible(first, second):
    result = run([account()], [first, second])
    assert el.ELIGIBLE in rows_of(result, "A") and el.ELIGIBLE in rows_of(result, "B")


def test_an_ineligible_assignment_does_not_hold_the_subscription():
    result = run([account()], [
        assignment("A", "ADD_TV", "TV1E", "2026-03-01"),
        assignment("B", "ADD_TV", "TV1", "2026-03-02", assigned_at="2026-01-02T00:00:00"),
    ])
    assert el.CURRENCY in rows_of(result, "A")
    assert el.ELIGIBLE in rows_of(result, "B")


def test_once_per_account_chains_are_settled_in_assignment_order():
    # A keeps SUB_TV; B overlaps A and loses; C overlaps only B, which holds nothing: C keeps it.
    result = run([account()], [
        assignment("A", "ADD_TV", "TV1", "2026-03-01", end="2026-03-10",
                   assigned_at="2026-01-01T00:00:00"),
        assignment("B", "ADD_TV", "TV1", "2026-03-05", end="2026-03-20",
                   assigned_at="2026-01-02T00:00:00"),
        assignment("C", "ADD_TV", "TV1", "2026-03-15", assigned_at="2026-01-03T00:00:00"),
    ])
    assert el.ELIGIBLE in rows_of(result, "A")
    assert "through A" in rows_of(result, "B")[el.ONCE_PER_ACCOUNT][1]
    assert el.ELIGIBLE in rows_of(result, "C")


@pytest.mark.parametrize(
    ("asg", "rules"),
    [
        (assignment("S1", "ADD_GHOST", None, "2026-03-02"), {el.AVAILABLE}),
        (assignment("S1", "ADD_TV", "NO_SUCH_PLAN", "2026-03-02"), {el.FEE_PLAN}),
    ],
    ids=["unknown-addon", "unknown-fee-plan"],
)
def test_ids_missing_from_the_catalog_are_ineligible_not_a_crash(asg, rules):
    assert set(rows_of(run([account()], [asg]), "S1")) == rules


def test_duplicate_assignment_ids_are_refused():
    with pytest.raises(ValueError, match="more than one row"):
        run([account()], [assignment("S1", "ADD_TV", "TV1", "2026-03-02"),
                          assignment("S1", "ADD_TV", "TV1", "2026-03-05")])

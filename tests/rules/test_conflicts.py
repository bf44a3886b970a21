"""Priority conflicts (SPEC §3) under both policies, on a small purpose-made catalog."""

from __future__ import annotations

import polars as pl
import pytest
from rules_cases import account, accounts_frame, assignment, assignments_frame, conflict_catalog, d

from rules import conflicts as cf
from rules import decide
from rules import eligibility as el

CATALOG = conflict_catalog()
PERIOD = "2026-03"


def run(assignments: list[dict], policy: str, product: str = "MP"):
    """decide over PERIOD for one account on `product`."""
    return decide(CATALOG, accounts_frame([account(product=product)]),
                  assignments_frame(assignments), [PERIOD], policy)


def rows_of(result, assignment_id: str) -> dict[str, tuple[str, str]]:
    """rule -> (outcome, reason) of one assignment."""
    frame = result.decisions.filter(pl.col("assignment_id") == assignment_id)
    return {r["rule"]: (r["outcome"], r["reason"]) for r in frame.to_dicts()}


def life(result, assignment_id: str) -> dict:
    """The settled life cycle of one assignment."""
    return result.lifecycles.filter(pl.col("assignment_id") == assignment_id).to_dicts()[0]


def pair(first: str = "V1", later: str = "V2", first_start: str = "2026-03-01",
         later_start: str = "2026-03-10", first_end: str | None = None) -> list[dict]:
    """Two assignments on one account; the first one is assigned a day earlier."""
    return [
        assignment("E", first, None, first_start, end=first_end, assigned_at="2026-02-01T00:00"),
        assignment("L", later, None, later_start, assigned_at="2026-02-02T00:00"),
    ]


def test_replace_the_later_one_replaces_the_earlier_one_from_its_start():
    result = run(pair(), "replace")
    outcome, reason = rows_of(result, "E")[cf.REPLACED]
    assert outcome == "replaced"
    assert reason == ("replaced by L (V2), assigned later, from 2026-03-10: both have priority 20 "
                      "and discount voice/US/quantity")
    earlier = life(result, "E")
    assert (earlier["eff_end"], earlier["end_reason"], earlier["billable"]) == (
        d("2026-03-10"), "replaced", True)
    assert rows_of(result, "E")[
        "add-on is active from its start date until its end date"][0] == "active"
    assert life(result, "L")["eff_end"] is None and life(result, "L")["billable"]


def test_reject_the_later_one_is_refused():
    result = run(pair(), "reject")
    outcome, reason = rows_of(result, "L")[cf.REJECTED]
    assert outcome == "rejected"
    assert reason == ("refused: E (V1), assigned earlier, has the same priority 20 and also "
                      "discounts voice/US/quantity")
    assert not life(result, "L")["billable"]
    assert life(result, "E")["eff_end"] is None and life(result, "E")["billable"]
    assert set(rows_of(result, "L")) == {el.ELIGIBLE, cf.REJECTED}


def test_replace_before_the_earlier_one_starts_leaves_it_never_active():
    result = run(pair(first_start="2026-03-10", later_start="2026-03-01"), "replace")
    earlier = life(result, "E")
    assert (earlier["eff_start"], earlier["eff_end"], earlier["billable"]) == (
        d("2026-03-10"), d("2026-03-10"), False)
    assert rows_of(result, "E")["add-on is expired from its end date"][0] == "expired"


def test_several_shared_entries_are_all_named_once():
    result = run(pair(first="MULTI", later="MULTI"), "replace")
    assert rows_of(result, "E")[cf.REPLACED][1].endswith("discount sms/ANY/quantity, "
                                                         "voice/US/quantity")


@pytest.mark.parametrize(
    ("first", "later", "first_end"),
    [
        ("V1", "HI", None),
        ("V1", "SMS", None),
        ("V1", "AMT", None),
        ("V1", "NODISC", None),
        ("V1", "V2", "2026-03-10"),
    ],
    ids=["different-priority", "no-shared-entry", "other-threshold-type", "no-discount-plan",
         "no-overlap"],
)
@pytest.mark.parametrize("policy", ["replace", "reject"])
def test_add_ons_that_do_not_conflict_both_stand(first, later, first_end, policy):
    result = run(pair(first=first, later=later, first_end=first_end), policy)
    for assignment_id in ("E", "L"):
        rules = set(rows_of(result, assignment_id))
        assert cf.REPLACED not in rules and cf.REJECTED not in rules
        assert life(result, assignment_id)["billable"]


def test_replace_chain_each_one_ends_when_the_next_one_starts():
    result = run([
        assignment("A", "V1", None, "2026-03-01", assigned_at="2026-02-01T00:00"),
        assignment("B", "V2", None, "2026-03-05", assigned_at="2026-02-02T00:00"),
        assignment("C", "V3", None, "2026-03-20", assigned_at="2026-02-03T00:00"),
    ], "replace")
    assert life(result, "A")["eff_end"] == d("2026-03-05")
    assert "replaced by B" in rows_of(result, "A")[cf.REPLACED][1]
    assert life(result, "B")["eff_end"] == d("2026-03-20")
    assert "replaced by C" in rows_of(result, "B")[cf.REPLACED][1]
    assert life(result, "C")["eff_end"] is None


def test_reject_chain_a_refused_add_on_refuses_nothing():
    # B overlaps A and is refused; C overlaps only B, which never applies: C stands.
    result = run([
        assignment("A", "V1", None, "2026-03-01", end="2026-03-10",
                   assigned_at="2026-02-01T00:00"),
        assignment("B", "V2", None, "2026-03-05", end="2026-03-25",
                   assigned_at="2026-02-02T00:00"),
        assignment("C", "V3", None, "2026-03-15", assigned_at="2026-02-03T00:00"),
    ], "reject")
    assert rows_of(result, "B")[cf.REJECTED][0] == "rejected"
    assert cf.REJECTED not in rows_of(result, "C")
    assert life(result, "C")["billable"] and life(result, "A")["billable"]


def test_only_eligible_assignments_take_part():
    result = run(pair(later="V2"), "replace", product="MP_SMALL")
    assert rows_of(result, "L")[el.AVAILABLE][0] == "ineligible"
    assert cf.REPLACED not in rows_of(result, "E")
    assert life(result, "E")["eff_end"] is None


def test_a_bad_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        run(pair(), "merge")


# --- The verdicts `available_addons` reads (rules.conflicts.offer_verdicts) -------------------

# Same priority 20 and a shared entry: V1, V2, V3 and MULTI all discount voice/US by quantity;
# SMS and MULTI both discount sms/ANY. HI (priority 30) shares V1's entry at another priority,
# AMT counts amount, not quantity, and NODISC has no plan: none of those three conflicts.
CONFLICTING = {
    frozenset(p) for p in [("V1", "V2"), ("V1", "V3"), ("V2", "V3"), ("V1", "MULTI"),
                           ("V2", "MULTI"), ("V3", "MULTI"), ("SMS", "MULTI")]
}


@pytest.mark.parametrize(("policy", "outcome"), [("replace", "replaced"), ("reject", "rejected")])
def test_offer_verdicts_judge_every_ordered_pair_of_distinct_addons(policy, outcome) -> None:
    verdicts = cf.offer_verdicts(CATALOG, policy)
    assert verdicts.height == 8 * 7  # 8 add-ons, each after each of the 7 others
    clashing = verdicts.filter(pl.col("outcome") != "no conflict")
    assert {frozenset(p) for p in clashing.select("first_addon", "later_addon").rows()} == (
        CONFLICTING
    )
    assert clashing.height == 2 * len(CONFLICTING)  # both orders of each pair
    assert set(clashing["outcome"]) == {outcome}
    assert set(verdicts.filter(pl.col("outcome") == "no conflict")["rule"]) == {cf.NO_CONFLICT}

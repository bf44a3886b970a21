"""Which (account, period) groups a run computes (SPEC §5)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline.schedule import (
    cutoff_for,
    finalizes_on,
    is_finalized_by,
    nightly_plan,
    reprocess_plan,
    shard_of,
    with_cutoffs,
    with_finalize_dates,
)

ACCOUNTS = pl.DataFrame(
    {
        "account_id": ["A1", "A15"],
        "billing_day": [1, 15],
        "opened_on": [date(2026, 1, 10), date(2026, 2, 20)],
        "effective_from": [date(2026, 1, 10), date(2026, 2, 20)],
    }
)
ACTIVITY = pl.DataFrame(
    {"account_id": ["A1", "A15"], "first_day": [date(2026, 1, 10), date(2026, 2, 20)]}
)
NONE_FINAL = pl.DataFrame(schema={"account_id": pl.Utf8, "period": pl.Utf8})


def test_an_account_without_activity_has_nothing_to_bill() -> None:
    only_a1 = ACTIVITY.filter(pl.col("account_id") == "A1")
    plan = nightly_plan(ACCOUNTS, only_a1, NONE_FINAL, date(2026, 3, 10))
    assert set(plan["account_id"]) == {"A1"}


def test_first_run_catches_up_from_the_earliest_activity() -> None:
    plan = nightly_plan(ACCOUNTS, ACTIVITY, NONE_FINAL, date(2026, 3, 10))
    got = plan.select("account_id", "period", "status", "period_start", "period_end").rows()
    assert got == [
        ("A1", "2026-01", "final", date(2026, 1, 1), date(2026, 2, 1)),
        ("A1", "2026-02", "final", date(2026, 2, 1), date(2026, 3, 1)),
        ("A15", "2026-02", "draft", date(2026, 2, 15), date(2026, 3, 15)),
        ("A1", "2026-03", "draft", date(2026, 3, 1), date(2026, 4, 1)),
    ]


def test_a_period_ending_on_the_as_of_date_is_final() -> None:
    plan = nightly_plan(ACCOUNTS, ACTIVITY, NONE_FINAL, date(2026, 3, 15))
    a15 = plan.filter(pl.col("account_id") == "A15")
    assert a15.select("period", "status").rows() == [("2026-02", "final"), ("2026-03", "draft")]


def test_finalized_periods_are_not_recomputed_and_activity_moves_the_start() -> None:
    finalized = pl.DataFrame({"account_id": ["A1"], "period": ["2026-01"]})
    # A1 opened in 2025 but its first activity is Jan 10; A15's first call precedes its row.
    early = pl.DataFrame(
        {"account_id": ["A1", "A15"], "first_day": [date(2026, 1, 10), date(2026, 1, 20)]}
    )
    plan = nightly_plan(ACCOUNTS.with_columns(opened_on=pl.lit(date(2025, 3, 1))), early,
                        finalized, date(2026, 2, 5))
    assert plan.select("account_id", "period", "status").rows() == [
        ("A15", "2026-01", "draft"),
        ("A1", "2026-02", "draft"),
    ]


def test_reprocess_plan_marks_final_accounts() -> None:
    finalized = pl.DataFrame({"account_id": ["A1"], "period": ["2026-02"]})
    plan = reprocess_plan(ACCOUNTS, ACTIVITY, finalized, "2026-02")
    assert plan.select("account_id", "status").rows() == [("A1", "final"), ("A15", "draft")]
    # An account whose first activity is after the period is not in it.
    assert reprocess_plan(ACCOUNTS, ACTIVITY, finalized, "2026-01")["account_id"].to_list() == [
        "A1"
    ]


def test_shards_are_stable_and_cover_every_account() -> None:
    ids = pl.DataFrame({"account_id": [f"A{i}" for i in range(200)]})
    for shards in (1, 2, 3, 7):
        parts = ids.with_columns(shard=shard_of(pl.col("account_id"), shards))
        assert parts["shard"].max() < shards
        assert parts.height == 200


def test_a_final_period_is_billed_whole_and_a_draft_up_to_the_as_of_date() -> None:
    plan = pl.DataFrame({"account_id": ["A1", "A2"], "status": ["final", "draft"]})
    as_of = date(2026, 3, 10)
    assert with_cutoffs(plan, as_of)["cutoff"].to_list() == [None, as_of]
    assert with_cutoffs(plan, None)["cutoff"].to_list() == [None, None]  # no nightly run yet
    assert [cutoff_for(s, as_of) for s in ("final", "draft", None)] == [None, as_of, as_of]


# --- SPEC §8.3: a grace period before finalization --------------------------------------------


@pytest.mark.parametrize(
    ("billing_day", "grace", "as_of", "status"),
    [
        # G = 0 is SPEC §5: January (ends 2026-02-01, exclusive) is final from Feb 1.
        (1, 0, date(2026, 1, 31), "draft"),
        (1, 0, date(2026, 2, 1), "final"),
        # SPEC §8.3's example, G = 3: the day before the limit, at it, after it.
        (1, 3, date(2026, 2, 1), "draft"),
        (1, 3, date(2026, 2, 3), "draft"),
        (1, 3, date(2026, 2, 4), "final"),
        (1, 3, date(2026, 2, 20), "final"),
        # Billing day 15: period 2026-01 runs from Jan 15 to Feb 15 (exclusive).
        (15, 0, date(2026, 2, 15), "final"),
        (15, 3, date(2026, 2, 17), "draft"),
        (15, 3, date(2026, 2, 18), "final"),
        # Billing day 28: period 2026-01 ends on Feb 28; three days later is Mar 3.
        (28, 3, date(2026, 3, 2), "draft"),
        (28, 3, date(2026, 3, 3), "final"),
        # The longest grace, 31 days, from Feb 1: finalized from Mar 4.
        (1, 31, date(2026, 3, 3), "draft"),
        (1, 31, date(2026, 3, 4), "final"),
    ],
)
def test_a_period_is_finalized_only_once_its_grace_is_over(
    billing_day: int, grace: int, as_of: date, status: str
) -> None:
    accounts = pl.DataFrame({
        "account_id": ["A"], "billing_day": [billing_day],
        "opened_on": [date(2026, 1, billing_day)], "effective_from": [date(2026, 1, billing_day)],
    })
    activity = pl.DataFrame({"account_id": ["A"], "first_day": [date(2026, 1, billing_day)]})
    plan = nightly_plan(accounts, activity, NONE_FINAL, as_of, grace_days=grace)
    january = plan.filter(pl.col("period") == "2026-01")
    assert january["status"].to_list() == [status]
    end = january["period_end"].item()
    assert is_finalized_by(end, as_of, grace) == (status == "final")
    assert with_finalize_dates(january, grace)["finalizes_on"].item() == finalizes_on(end, grace)
    # The period containing the as-of date is open: always a draft, whatever the grace.
    assert plan["status"].to_list()[-1] == "draft"


def test_a_catch_up_with_a_grace_finalizes_only_the_periods_past_it() -> None:
    plan = nightly_plan(ACCOUNTS, ACTIVITY, NONE_FINAL, date(2026, 3, 3), grace_days=3)
    assert plan.filter(pl.col("account_id") == "A1").select("period", "status").rows() == [
        ("2026-01", "final"),  # ended Feb 1: final from Feb 4
        ("2026-02", "draft"),  # ended Mar 1: waits for its grace until Mar 4
        ("2026-03", "draft"),  # open
    ]


@pytest.mark.parametrize("grace", [-1, 32, 1.5, True])
def test_a_grace_outside_0_to_31_days_is_refused(grace: object) -> None:
    with pytest.raises(ValueError, match="grace days"):
        finalizes_on(date(2026, 2, 1), grace)  # type: ignore[arg-type]

"""Recompute-then-diff: adjustment lines for finalized periods (SPEC §5)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline.adjust import (
    DuplicateLineKeyError,
    adjustment_lines,
    check_unique_line_keys,
    split_reprocess,
)

SCHEMA = {
    "account_id": pl.Utf8, "period": pl.Utf8, "line_type": pl.Utf8, "assignment_id": pl.Utf8,
    "addon_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
    "quantity_units": pl.Int64, "amount_minor": pl.Int64, "currency": pl.Utf8,
    "description": pl.Utf8, "term_start": pl.Date, "line_date": pl.Date,
}


def line(line_type: str, amount: int, *, assignment: str | None = "AS1", service: str | None = None,
         quantity: int = 1_000_000, term_start: date | None = date(2026, 6, 1)) -> dict:
    return {
        "account_id": "A1", "period": "2026-06", "line_type": line_type,
        "assignment_id": assignment, "addon_id": "ADD_TV" if assignment else None,
        "service": service, "destination_group": "US" if service else None,
        "quantity_units": quantity, "amount_minor": amount, "currency": "USD",
        "description": f"{line_type} line", "term_start": term_start,
        "line_date": date(2026, 6, 1),
    }


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA)


TV_FEE = line("recurring", 3000)
USAGE = line("usage", 500, assignment=None, service="voice", quantity=50_000_000, term_start=None)


def test_unchanged_inputs_add_no_line() -> None:
    assert adjustment_lines(frame(TV_FEE, USAGE), frame(USAGE, TV_FEE)).height == 0


def test_late_usage_adds_the_difference_only() -> None:
    # 30 late minutes at $0.10 = $3.00 more usage, on a $5.00 usage line.
    late = {**USAGE, "amount_minor": 800, "quantity_units": 80_000_000}
    adj = adjustment_lines(frame(TV_FEE, USAGE), frame(TV_FEE, late))
    assert adj.height == 1
    row = adj.row(0, named=True)
    got = (row["line_type"], row["amount_minor"], row["quantity_units"])
    assert got == ("usage", 300, 30_000_000)
    assert row["reason"].startswith("late or corrected usage: usage line changed")
    # In the currency's units, not minor units (issue 21): $5.00 billed, $8.00 now.
    assert row["reason"].endswith("billed 5.00, now 8.00 USD")


@pytest.mark.parametrize(("minor_units", "billed", "now"), [
    ({"USD": 2}, "5.00", "8.00"),
    ({"USD": 0}, "500", "800"),  # a currency without decimals (as JPY)
    ({"USD": 3}, "0.500", "0.800"),
    (None, "5.00", "8.00"),  # without the catalog's currencies: 2 decimals
])
def test_an_adjustment_reason_gives_amounts_at_the_currency_precision(
    minor_units: dict[str, int] | None, billed: str, now: str
) -> None:
    late = {**USAGE, "amount_minor": 800, "quantity_units": 80_000_000}
    reason = adjustment_lines(frame(TV_FEE, USAGE), frame(TV_FEE, late), minor_units)["reason"][0]
    assert reason.endswith(f"billed {billed}, now {now} USD")


def test_backdated_removal_adds_a_credit_line() -> None:
    # $30 TV pack removed on June 16 (billing day 1): 15 unused days of 30 -> -$15.00.
    credit = line("credit", -1500, term_start=date(2026, 6, 1))
    adj = adjustment_lines(frame(TV_FEE), frame(TV_FEE, credit))
    assert adj.select("line_type", "amount_minor").rows() == [("credit", -1500)]
    assert "added" in adj["reason"][0]


def test_removed_line_is_reversed() -> None:
    adj = adjustment_lines(frame(TV_FEE, USAGE), frame(TV_FEE))
    assert adj.select("line_type", "amount_minor", "quantity_units").rows() == [
        ("usage", -500, -50_000_000)
    ]


def test_second_reprocess_after_adjustment_adds_nothing() -> None:
    late = {**USAGE, "amount_minor": 800, "quantity_units": 80_000_000}
    first = adjustment_lines(frame(TV_FEE, USAGE), frame(TV_FEE, late))
    billed_now = pl.concat([frame(TV_FEE, USAGE), first.select(SCHEMA.keys())])
    assert adjustment_lines(billed_now, frame(TV_FEE, late)).height == 0


def test_duplicate_line_key_fails() -> None:
    check_unique_line_keys(frame(TV_FEE, USAGE))
    with pytest.raises(DuplicateLineKeyError):
        check_unique_line_keys(frame(TV_FEE, TV_FEE))


def test_a_reprocess_replaces_drafts_and_adjusts_finals() -> None:
    """A1's period is final: its recomputed TV fee (30.00 -> 25.00) becomes a -5.00 adjustment;
    A2's is a draft: its recomputed lines, invoice and decisions are kept as they are."""
    recomputed = pl.concat([
        frame(line("recurring", 2500)),
        frame({**line("recurring", 3000), "account_id": "A2"}),
    ])
    invoices = pl.DataFrame({"account_id": ["A1", "A2"], "period": ["2026-06"] * 2,
                             "currency": ["USD"] * 2, "total_minor": [2500, 3000]})
    decisions = pl.DataFrame({"account_id": ["A1", "A2"], "period": ["2026-06"] * 2,
                              "assignment_id": ["AS1", "AS1"], "outcome": ["active"] * 2})
    plan = pl.DataFrame({"account_id": ["A1", "A2"], "period": ["2026-06"] * 2,
                         "status": ["final", "draft"]})
    split = split_reprocess(plan, recomputed, invoices, decisions, frame(TV_FEE))
    assert split.scope.rows() == [("A2", "2026-06", "draft")]
    assert split.charges["account_id"].to_list() == ["A2"]
    assert split.invoices.rows() == [("A2", "2026-06", "USD", 3000)]
    assert split.decisions["account_id"].to_list() == ["A2"]
    assert split.adjustments.select("account_id", "line_type", "amount_minor").rows() == [
        ("A1", "recurring", -500)
    ]
    assert split.adjustments["reason"][0].startswith("corrected assignment: recurring line")

"""`pipeline.contracts`: one declaration per concept, and the line-type registry."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline import adjust, invoices
from pipeline.contracts import (
    LINE_SCHEMA,
    LINE_TYPES,
    REVENUE_BUCKETS,
    first_billing_days,
    line_types_where,
)


def test_the_registry_holds_the_line_types_of_the_spec() -> None:
    # SPEC §6 names five; §7.4 adds `suspension_credit`, §8.5 `termination_fee`.
    assert list(LINE_TYPES) == [
        "recurring", "activation", "credit", "usage", "discount", "suspension_credit",
        "termination_fee",
    ]
    assert {t.revenue_bucket for t in LINE_TYPES.values()} == set(REVENUE_BUCKETS)


@pytest.mark.parametrize(
    ("line_type", "dropped", "bucket", "cause"),
    [
        ("recurring", False, "fees", "corrected assignment"),
        ("activation", True, "fees", "corrected assignment"),
        ("credit", True, "fees", "backdated removal or changed end date"),
        ("usage", False, "usage", "late or corrected usage"),
        ("discount", True, "discounts", "late or corrected usage"),
        ("suspension_credit", True, "suspension_credits", "changed account status"),
    ],
)
def test_each_line_type_says_if_a_zero_line_drops_its_bucket_and_its_cause(
    line_type: str, dropped: bool, bucket: str, cause: str
) -> None:
    entry = LINE_TYPES[line_type]
    assert (entry.drop_when_zero, entry.revenue_bucket, entry.adjustment_cause) == (
        dropped, bucket, cause
    )


def _zero_line(line_type: str) -> dict:
    return {name: None for name in LINE_SCHEMA} | {
        "account_id": "A1", "period": "2026-01", "line_type": line_type, "amount_minor": 0,
        "quantity_units": 0, "currency": "USD", "line_date": date(2026, 1, 1),
    }


def test_invoices_drop_the_zero_lines_the_registry_drops() -> None:
    parts = [pl.DataFrame([_zero_line(t) for t in LINE_TYPES], schema=LINE_SCHEMA)]
    kept = invoices.invoice_lines(parts)["line_type"].to_list()
    assert sorted(kept) == sorted(line_types_where(drop_when_zero=False)) == ["recurring", "usage"]


def test_an_adjustment_names_the_cause_the_registry_gives_its_line_type() -> None:
    billed = pl.DataFrame([_zero_line("credit") | {"amount_minor": -300}], schema=LINE_SCHEMA)
    recomputed = billed.with_columns(pl.lit(-100, dtype=pl.Int64).alias("amount_minor"))
    reason = adjust.adjustment_lines(billed, recomputed, {"USD": 2})["reason"][0]
    # Billed -3.00, now -1.00: a +2.00 adjustment, caused by a changed end date.
    assert reason.startswith("backdated removal or changed end date: credit line changed")
    assert reason.endswith("billed -3.00, now -1.00 USD")


def test_the_billing_day_is_the_one_of_the_accounts_earliest_row() -> None:
    accounts = pl.DataFrame({
        "account_id": ["B", "A", "A"],
        "billing_day": [7, 15, 3],  # A's rows are out of order: its 2026-01-01 row says 3
        "effective_from": [date(2026, 5, 1), date(2026, 3, 1), date(2026, 1, 1)],
    })
    assert first_billing_days(accounts).rows() == [("A", 3), ("B", 7)]

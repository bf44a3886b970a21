"""Period and term maths (pipeline/periods.py), from tables, with Kill Bill's cases."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.periods import (
    account_periods,
    add_months,
    days_between,
    days_between_expr,
    first_boundary,
    first_boundary_index_expr,
    index_date,
    index_date_expr,
    parse_period,
    period_bounds,
    period_containing,
    period_index,
    period_index_expr,
    period_name_index,
    period_of_expr,
    periods_between,
    shift_period,
    term_of,
)


@pytest.mark.parametrize(
    ("period", "billing_day", "start", "end"),
    [
        ("2026-06", 1, date(2026, 6, 1), date(2026, 7, 1)),
        ("2026-06", 15, date(2026, 6, 15), date(2026, 7, 15)),
        ("2026-12", 28, date(2026, 12, 28), date(2027, 1, 28)),
        ("2012-02", 1, date(2012, 2, 1), date(2012, 3, 1)),
        ("2026-01", 31 - 3, date(2026, 1, 28), date(2026, 2, 28)),
    ],
)
def test_period_bounds(period: str, billing_day: int, start: date, end: date) -> None:
    assert period_bounds(period, billing_day) == (start, end)


@pytest.mark.parametrize(
    ("day", "billing_day", "period"),
    [
        (date(2026, 6, 1), 1, "2026-06"),
        (date(2026, 6, 30), 1, "2026-06"),
        (date(2026, 6, 14), 15, "2026-05"),
        (date(2026, 6, 15), 15, "2026-06"),
        (date(2026, 1, 3), 15, "2025-12"),
    ],
)
def test_period_containing(day: date, billing_day: int, period: str) -> None:
    assert period_containing(day, billing_day) == period
    assert period_index(day, billing_day) == period_name_index(period)


@pytest.mark.parametrize(
    ("activation", "billing_day", "boundary"),
    [
        (date(2026, 3, 11), 1, date(2026, 4, 1)),  # the 3-month case: first boundary April 1
        (date(2012, 2, 1), 1, date(2012, 2, 1)),  # on the billing day: the boundary itself
        (date(2026, 6, 20), 15, date(2026, 7, 15)),
        (date(2026, 6, 15), 15, date(2026, 6, 15)),
        (date(2026, 6, 10), 15, date(2026, 6, 15)),
        (date(2026, 12, 20), 15, date(2027, 1, 15)),
    ],
)
def test_first_boundary_is_the_first_billing_day_on_or_after_activation(
    activation: date, billing_day: int, boundary: date
) -> None:
    assert first_boundary(activation, billing_day) == boundary


# (day, activation, billing day, term months) -> full term [start, end) and its length in days
TERMS = [
    # 3-month $9 plan from 2026-03-11: the partial first term is measured against Jan 1 - Apr 1.
    (date(2026, 3, 11), date(2026, 3, 11), 1, 3, date(2026, 1, 1), date(2026, 4, 1), 90),
    (date(2026, 4, 1), date(2026, 3, 11), 1, 3, date(2026, 4, 1), date(2026, 7, 1), 91),
    (date(2026, 6, 30), date(2026, 3, 11), 1, 3, date(2026, 4, 1), date(2026, 7, 1), 91),
    (date(2026, 7, 1), date(2026, 3, 11), 1, 3, date(2026, 7, 1), date(2026, 10, 1), 92),
    # Kill Bill's leap year: February 2012 has 29 days.
    (date(2012, 2, 14), date(2012, 2, 1), 1, 1, date(2012, 2, 1), date(2012, 3, 1), 29),
    # Lago: a monthly plan started 2022-03-15 is measured against March's 31 days.
    (date(2022, 3, 15), date(2022, 3, 15), 1, 1, date(2022, 3, 1), date(2022, 4, 1), 31),
    # $30 a month from June 11: June has 30 days.
    (date(2026, 6, 11), date(2026, 6, 11), 1, 1, date(2026, 6, 1), date(2026, 7, 1), 30),
    # Billing day 15.
    (date(2026, 6, 20), date(2026, 6, 20), 15, 1, date(2026, 6, 15), date(2026, 7, 15), 30),
    (date(2026, 7, 14), date(2026, 6, 20), 15, 1, date(2026, 6, 15), date(2026, 7, 15), 30),
    (date(2026, 7, 15), date(2026, 6, 20), 15, 1, date(2026, 7, 15), date(2026, 8, 15), 31),
    # Annual terms, one crossing February 29.
    (date(2026, 3, 11), date(2026, 3, 11), 1, 12, date(2025, 4, 1), date(2026, 4, 1), 365),
    (date(2024, 2, 10), date(2024, 2, 10), 1, 12, date(2023, 3, 1), date(2024, 3, 1), 366),
    # Six months, billing day 28: Aug 30 is in the period Aug 28 - Sep 28, before the first
    # boundary (Sep 28), so its term is the full one ending there.
    (date(2026, 9, 1), date(2026, 8, 30), 28, 6, date(2026, 3, 28), date(2026, 9, 28), 184),
    (date(2026, 9, 28), date(2026, 8, 30), 28, 6, date(2026, 9, 28), date(2027, 3, 28), 181),
]


@pytest.mark.parametrize(("day", "activation", "bd", "months", "start", "end", "days"), TERMS)
def test_term_of(day: date, activation: date, bd: int, months: int, start: date, end: date,
                 days: int) -> None:
    assert term_of(day, activation, bd, months) == (start, end)
    assert days_between(start, end) == days


@pytest.mark.parametrize(("day", "activation", "bd", "months", "start", "end", "days"), TERMS)
def test_vectorized_terms_match_the_table(day: date, activation: date, bd: int, months: int,
                                          start: date, end: date, days: int) -> None:
    frame = pl.DataFrame({"day": [day], "activation": [activation], "bd": [bd]})
    b0 = first_boundary_index_expr(pl.col("activation"), pl.col("bd"))
    k = (period_index_expr(pl.col("day"), pl.col("bd")) - b0) // months
    got = frame.select(
        index_date_expr(b0 + k * months, pl.col("bd")).alias("start"),
        index_date_expr(b0 + (k + 1) * months, pl.col("bd")).alias("end"),
    ).with_columns(days=days_between_expr(pl.col("start"), pl.col("end")))
    assert got.row(0) == (start, end, days)


def test_shift_and_list_periods() -> None:
    assert shift_period("2026-12", 1) == "2027-01"
    assert shift_period("2026-01", -1) == "2025-12"
    assert periods_between("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert add_months(date(2026, 1, 28), 1) == date(2026, 2, 28)
    assert index_date(2026 * 12 + 5, 15) == date(2026, 6, 15)


@pytest.mark.parametrize("bad", ["2026-6", "2026-13", "26-06", "2026/06", "x"])
def test_parse_period_rejects_malformed_names(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_period(bad)


def test_account_periods_use_the_billing_day_of_the_earliest_row() -> None:
    accounts = pl.DataFrame({
        "account_id": ["B", "A", "A"],
        "billing_day": [15, 1, 9],
        "effective_from": [date(2026, 1, 1), date(2026, 1, 1), date(2026, 5, 1)],
    })
    got = account_periods(accounts, "2026-06")
    assert got.rows() == [
        ("A", "2026-06", date(2026, 6, 1), date(2026, 7, 1)),
        ("B", "2026-06", date(2026, 6, 15), date(2026, 7, 15)),
    ]


days = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))


@settings(max_examples=300, deadline=None)
@given(day=days, activation=days, bd=st.integers(1, 28), months=st.sampled_from([1, 3, 6, 12]))
def test_vectorized_twins_agree_with_the_scalar_functions(
    day: date, activation: date, bd: int, months: int
) -> None:
    frame = pl.DataFrame({"day": [day], "activation": [activation], "bd": [bd]})
    b0 = first_boundary_index_expr(pl.col("activation"), pl.col("bd"))
    k = (period_index_expr(pl.col("day"), pl.col("bd")) - b0) // months
    row = frame.select(
        period_index_expr(pl.col("day"), pl.col("bd")).alias("index"),
        period_of_expr(pl.col("day"), pl.col("bd")).alias("name"),
        index_date_expr(b0, pl.col("bd")).alias("boundary"),
        index_date_expr(b0 + k * months, pl.col("bd")).alias("start"),
        index_date_expr(b0 + (k + 1) * months, pl.col("bd")).alias("end"),
    ).row(0)
    assert row == (
        period_index(day, bd),
        period_containing(day, bd),
        first_boundary(activation, bd),
        *term_of(day, activation, bd, months),
    )


@settings(max_examples=300, deadline=None)
@given(day=days, activation=days, bd=st.integers(1, 28), months=st.sampled_from([1, 3, 6, 12]))
def test_terms_tile_time_and_contain_their_day(
    day: date, activation: date, bd: int, months: int
) -> None:
    start, end = term_of(day, activation, bd, months)
    assert start <= max(day, start) < end
    if day >= start:
        assert start <= day < end
    assert start.day == end.day == bd
    assert add_months(start, months) == end
    assert term_of(end, activation, bd, months)[0] == end
    assert term_of(start - timedelta(days=1), activation, bd, months)[1] == start
    boundary = first_boundary(activation, bd)
    assert activation <= boundary < activation + timedelta(days=31)


@settings(max_examples=300, deadline=None)
@given(
    activation=days,
    bd=st.integers(1, 28),
    months=st.sampled_from([1, 3, 6, 12]),
    used=st.integers(0, 400),
)
def test_the_parts_of_a_term_add_up_to_the_term(
    activation: date, bd: int, months: int, used: int
) -> None:
    """Days before activation, days used and days after an end always make the full term."""
    start, end = term_of(activation, activation, bd, months)
    full = days_between(start, end)
    stop = min(end, activation + timedelta(days=used + 1))
    before = days_between(start, max(start, activation))
    after = days_between(stop, end)
    assert before + days_between(max(start, activation), stop) + after == full

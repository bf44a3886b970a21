"""Billing-period maths (SPEC §4): pure functions, scalar and vectorized.

Period `P` (text `YYYY-MM`) of an account with billing day `d` runs from day `d` of month `P` to
day `d` of the next month; end dates are exclusive. Billing days are 1..28, so adding months never
needs day clamping.
"""

from __future__ import annotations

from datetime import date

import polars as pl


def parse_period(period: str) -> tuple[int, int]:
    """`'2026-06'` -> `(2026, 6)`; raises ValueError on anything else."""
    try:
        year_text, month_text = period.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError as exc:
        raise ValueError(f"period {period!r} is not YYYY-MM") from exc
    if len(year_text) != 4 or len(month_text) != 2 or not 1 <= month <= 12:
        raise ValueError(f"period {period!r} is not YYYY-MM")
    return year, month


def add_months(day: date, months: int) -> date:
    """Same day-of-month `months` later; only valid for days 1..28."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def shift_period(period: str, months: int) -> str:
    """The period `months` after (or before, if negative) `period`."""
    year, month = parse_period(period)
    shifted = add_months(date(year, month, 1), months)
    return f"{shifted.year:04d}-{shifted.month:02d}"


def period_bounds(period: str, billing_day: int) -> tuple[date, date]:
    """`[start, end)` of `period` for an account with `billing_day`."""
    year, month = parse_period(period)
    start = date(year, month, billing_day)
    return start, add_months(start, 1)


def period_containing(day: date, billing_day: int) -> str:
    """The name of the period that contains `day`."""
    start = date(day.year, day.month, 1) if day.day >= billing_day else add_months(
        date(day.year, day.month, 1), -1
    )
    return f"{start.year:04d}-{start.month:02d}"


def periods_between(first: str, last: str) -> list[str]:
    """Every period name from `first` to `last`, inclusive."""
    out, current = [], first
    while current <= last:
        out.append(current)
        current = shift_period(current, 1)
    return out


def period_start_expr(period: str, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized start date of `period` for each row's billing day."""
    year, month = parse_period(period)
    return pl.date(pl.lit(year), pl.lit(month), billing_day)


def period_end_expr(period: str, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized exclusive end date of `period` for each row's billing day."""
    return period_start_expr(period, billing_day).dt.offset_by("1mo")


def period_of_expr(day: pl.Expr, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized `YYYY-MM` name of the period that contains `day`."""
    first_of_month = day.dt.truncate("1mo")
    start_month = (
        pl.when(day.dt.day() >= billing_day)
        .then(first_of_month)
        .otherwise(first_of_month.dt.offset_by("-1mo"))
    )
    return start_month.dt.strftime("%Y-%m")


def account_periods(accounts: pl.DataFrame, period: str) -> pl.DataFrame:
    """One row per account: `account_id, period, period_start, period_end` for `period`.

    `accounts` may hold several rows per account (product changes); the billing day is the one
    of the account's earliest row, since billing-day changes are rejected at load.
    """
    return (
        accounts.sort("effective_from")
        .group_by("account_id", maintain_order=True)
        .agg(pl.col("billing_day").first())
        .select(
            "account_id",
            pl.lit(period).alias("period"),
            period_start_expr(period, pl.col("billing_day")).alias("period_start"),
            period_end_expr(period, pl.col("billing_day")).alias("period_end"),
        )
        .sort("account_id")
    )

"""Billing-period maths (SPEC §4): pure functions, scalar and vectorized.

Period `P` (text `YYYY-MM`) of an account with billing day `d` runs from day `d` of month `P` to
day `d` of the next month; end dates are exclusive. Billing days are 1..28, so adding months never
needs day clamping.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.contracts import first_billing_days


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
        first_billing_days(accounts)
        .select(
            "account_id",
            pl.lit(period).alias("period"),
            period_start_expr(period, pl.col("billing_day")).alias("period_start"),
            period_end_expr(period, pl.col("billing_day")).alias("period_end"),
        )
        .sort("account_id")
    )


# --- Term maths (Kill Bill's convention, SPEC §4 "Periodic fees") --------------------------------
#
# A period index counts billing periods: the period that starts on day `d` of month `m` of year
# `y` has index `y * 12 + m - 1`. Terms of `N` months are aligned on the billing day, so every
# term boundary is a period boundary: the first boundary is the first billing day on or after
# activation, and the term of a period is `[b0 + k*N, b0 + (k+1)*N)` in period indexes, with
# `k = floor((p - b0) / N)`. A partial first term (activation not on the billing day) lies in the
# period just before `b0`, so it gets `k = -1`: the full term ending at the first boundary.


def period_index(day: date, billing_day: int) -> int:
    """Index of the billing period that contains `day`."""
    return day.year * 12 + day.month - 1 - (1 if day.day < billing_day else 0)


def index_date(index: int, billing_day: int) -> date:
    """Start date of the billing period with this index."""
    return date(index // 12, index % 12 + 1, billing_day)


def period_name_index(period: str) -> int:
    """Index of the period named `YYYY-MM`."""
    year, month = parse_period(period)
    return year * 12 + month - 1


def first_boundary(activation: date, billing_day: int) -> date:
    """The first billing day on or after `activation` (the first term boundary)."""
    extra = 0 if activation.day == billing_day else 1
    return index_date(period_index(activation, billing_day) + extra, billing_day)


def term_of(day: date, activation: date, billing_day: int, term_months: int) -> tuple[date, date]:
    """`[start, end)` of the full term (aligned on the first boundary) whose days include `day`."""
    b0 = period_index(first_boundary(activation, billing_day), billing_day)
    k = (period_index(day, billing_day) - b0) // term_months
    return (
        index_date(b0 + k * term_months, billing_day),
        index_date(b0 + (k + 1) * term_months, billing_day),
    )


def days_between(start: date, end: date) -> int:
    """Whole days in `[start, end)`."""
    return (end - start).days


def period_index_expr(day: pl.Expr, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized `period_index`."""
    months = day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32) - 1
    return months - (day.dt.day().cast(pl.Int32) < billing_day).cast(pl.Int32)


def index_date_expr(index: pl.Expr, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized `index_date`."""
    return pl.date(index // 12, index % 12 + 1, billing_day)


def first_boundary_index_expr(activation: pl.Expr, billing_day: pl.Expr) -> pl.Expr:
    """Vectorized period index of `first_boundary`."""
    extra = (activation.dt.day().cast(pl.Int32) != billing_day).cast(pl.Int32)
    return period_index_expr(activation, billing_day) + extra


def days_between_expr(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    """Vectorized `days_between`, as Int64."""
    return (end - start).dt.total_days().cast(pl.Int64)

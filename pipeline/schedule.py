"""Which (account, period) groups a run computes, and with which status (SPEC §5). Pure."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from pipeline.contracts import first_billing_days
from pipeline.periods import (
    parse_period,
    period_end_expr,
    period_of_expr,
    period_start_expr,
    periods_between,
)


def with_period_bounds(plan: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """Add `period_start` and `period_end` to rows of `account_id, period`."""
    days = first_billing_days(accounts).select("account_id", "billing_day")
    out = plan.join(days, on="account_id", how="left")
    year = pl.col("period").str.slice(0, 4).cast(pl.Int32)
    month = pl.col("period").str.slice(5, 2).cast(pl.Int8)
    start = pl.date(year, month, pl.col("billing_day"))
    return out.with_columns(
        start.alias("period_start"), start.dt.offset_by("1mo").alias("period_end")
    ).drop("billing_day")


MAX_GRACE_DAYS = 31  # SPEC §8.3: `finalize_grace_days` and `--grace-days` are 0 to 31


def check_grace_days(grace_days: int) -> int:
    """`grace_days` if it is a whole number of days from 0 to MAX_GRACE_DAYS, else ValueError."""
    if isinstance(grace_days, bool) or not isinstance(grace_days, int):
        raise ValueError(f"grace days {grace_days!r} is not a whole number")
    if not 0 <= grace_days <= MAX_GRACE_DAYS:
        raise ValueError(f"grace days {grace_days} is not from 0 to {MAX_GRACE_DAYS}")
    return grace_days


def finalizes_on(period_end: date, grace_days: int = 0) -> date:
    """The first as-of date whose nightly finalizes a period that ends on `period_end` (end
    dates are exclusive: the first day of the next period): `grace_days` days after it
    (SPEC §8.3; 0 is SPEC §5's "ended on or before the as-of date")."""
    return period_end + timedelta(days=check_grace_days(grace_days))


def finalizes_on_expr(period_end: pl.Expr, grace_days: int = 0) -> pl.Expr:
    """`finalizes_on` over a column of period ends."""
    return period_end.dt.offset_by(f"{check_grace_days(grace_days)}d")


def is_finalized_by(period_end: date, as_of: date, grace_days: int = 0) -> bool:
    """Whether a nightly as of `as_of` finalizes a period ending on `period_end` (SPEC §8.3)."""
    return finalizes_on(period_end, grace_days) <= as_of


def nightly_plan(
    accounts: pl.DataFrame,
    first_activity: pl.DataFrame,
    finalized: pl.DataFrame,
    as_of: date,
    grace_days: int = 0,
) -> pl.DataFrame:
    """Every (account, period) from the account's first activity (its earliest assignment start
    or usage event: an account with neither has nothing to bill) to the period containing `as_of`
    that is not final yet: `account_id, period, status, period_start, period_end`.

    `status` is `final` for a period that ended at least `grace_days` days before `as_of` (end
    dates are exclusive; `finalizes_on`), `draft` for the open one and for an ended one still in
    its grace (SPEC §8.3). A period never computed is computed first: this is the catch-up.
    """
    final_from = finalizes_on_expr(pl.col("period_end"), grace_days)
    days = first_billing_days(accounts)
    starts = days.join(first_activity, on="account_id", how="inner")
    bounds = starts.with_columns(
        period_of_expr(pl.col("first_day"), pl.col("billing_day")).alias("first_period"),
        period_of_expr(pl.lit(as_of), pl.col("billing_day")).alias("last_period"),
    ).filter(pl.col("first_period") <= pl.col("last_period"))
    if bounds.height == 0:
        return _empty_plan()
    all_periods = periods_between(bounds["first_period"].min(), bounds["last_period"].max())
    plan = (
        bounds.join(pl.DataFrame({"period": all_periods}), how="cross")
        .filter(pl.col("period").is_between(pl.col("first_period"), pl.col("last_period")))
        .join(finalized.select("account_id", "period"), on=["account_id", "period"], how="anti")
        .select("account_id", "period")
    )
    return (
        with_period_bounds(plan, accounts)
        .with_columns(
            pl.when(final_from <= as_of)
            .then(pl.lit("final"))
            .otherwise(pl.lit("draft"))
            .alias("status")
        )
        .select("account_id", "period", "status", "period_start", "period_end")
        .sort("period", "account_id")
    )


def reprocess_plan(
    accounts: pl.DataFrame, first_activity: pl.DataFrame, finalized: pl.DataFrame, period: str
) -> pl.DataFrame:
    """Every account with activity before the end of `period` (the same accounts a nightly run
    bills), with `final` where that (account, period) was finalized and `draft` otherwise:
    `account_id, period, status, period_start, period_end`."""
    parse_period(period)
    days = first_billing_days(accounts).join(first_activity, on="account_id", how="inner")
    plan = days.select(
        "account_id",
        "first_day",
        pl.lit(period).alias("period"),
        period_start_expr(period, pl.col("billing_day")).alias("period_start"),
        period_end_expr(period, pl.col("billing_day")).alias("period_end"),
    ).filter(pl.col("first_day") < pl.col("period_end"))
    final = finalized.filter(pl.col("period") == period).select(
        "account_id", pl.lit(True).alias("is_final")
    )
    return (
        plan.join(final, on="account_id", how="left")
        .with_columns(
            pl.when(pl.col("is_final").fill_null(False))
            .then(pl.lit("final"))
            .otherwise(pl.lit("draft"))
            .alias("status")
        )
        .select("account_id", "period", "status", "period_start", "period_end")
        .sort("account_id")
    )


def _empty_plan() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "account_id": pl.Utf8,
            "period": pl.Utf8,
            "status": pl.Utf8,
            "period_start": pl.Date,
            "period_end": pl.Date,
        }
    )


def shard_of(account_id: pl.Expr, shards: int) -> pl.Expr:
    """Stable shard number of an account; the result never depends on the number of shards."""
    return account_id.hash(seed=0) % shards


def with_cutoffs(plan: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    """Add each group's `cutoff`: a final period is billed whole (null), a draft up to `as_of`
    (the day a nightly run bills to; a reprocess keeps the horizon of the last nightly run)."""
    return plan.with_columns(
        pl.when(pl.col("status") == "final")
        .then(pl.lit(None, dtype=pl.Date))
        .otherwise(pl.lit(as_of, dtype=pl.Date))
        .alias("cutoff")
    )


def day_limit(period_end: pl.Expr, cutoff: pl.Expr) -> pl.Expr:
    """The first day a group's bill does not count: its period's end, or the day after the
    cutoff of a draft (a null cutoff: the whole period)."""
    return pl.min_horizontal(period_end, cutoff.dt.offset_by("1d"))


def cutoff_for(status: str | None, as_of: date | None) -> date | None:
    """The cutoff of one (account, period) of `status`, as `with_cutoffs` sets it."""
    return None if status == "final" else as_of


def with_finalize_dates(plan: pl.DataFrame, grace_days: int = 0) -> pl.DataFrame:
    """Add `finalizes_on` to a nightly plan: the as-of date from which a nightly finalizes each
    (account, period) (`finalizes_on`), e.g. to say how long a period that ended waits for its
    grace to end (SPEC §8.3)."""
    return plan.with_columns(
        finalizes_on_expr(pl.col("period_end"), grace_days).alias("finalizes_on")
    )

"""Which (account, period) groups a run computes, and with which status (SPEC §5). Pure."""

from __future__ import annotations

from datetime import date

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


def nightly_plan(
    accounts: pl.DataFrame,
    first_activity: pl.DataFrame,
    finalized: pl.DataFrame,
    as_of: date,
) -> pl.DataFrame:
    """Every (account, period) from the account's first activity (its earliest assignment start
    or usage event: an account with neither has nothing to bill) to the period containing `as_of`
    that is not final yet: `account_id, period, status, period_start, period_end`.

    `status` is `final` for a period that ended on or before `as_of` (end dates are exclusive),
    `draft` for the open one. A period never computed is computed first: this is the catch-up.
    """
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
            pl.when(pl.col("period_end") <= as_of)
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

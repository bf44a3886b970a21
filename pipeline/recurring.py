"""Fee lines (SPEC §4 "Periodic fees"): periodic fees, credits and activation fees.

One row per billable assignment with a fee plan is enough for a period: terms are aligned on the
billing day, so exactly one term (or partial first term) overlaps each billing period. From that
term's day counts come at most three lines: the `in_advance` charge (dated on the term's first
active day), the `in_arrears` charge (dated on its last active day) and the credit of a prepaid
term cut short (dated on the end date). Every amount is `fee × quantity × days / days_in_term`,
an exact ratio of integers rounded once, half away from zero.
"""

from __future__ import annotations

import polars as pl

from pipeline.catalog import UNIT, CatalogFrames
from pipeline.contracts import OPEN_END
from pipeline.invoices import as_lines, is_silent
from pipeline.money import prorate
from pipeline.periods import (
    days_between_expr,
    first_boundary_index_expr,
    index_date_expr,
    period_name_index,
)
from pipeline.promotions import promotional_fees
from pipeline.suspensions import suspension_credit_lines


def fee_terms(
    catalog: CatalogFrames, lifecycles: pl.DataFrame, accounts: pl.DataFrame, period: str
) -> pl.LazyFrame:
    """One row per billable assignment with a fee plan and the term that overlaps `period`.

    `accounts` is the coordinator's account context (`account_id, billing_day, period_start,
    period_end, day_limit`). Adds `term_start, term_end` (the full term), `active_start,
    active_end` (its active part), `full_days, start_missing, end_missing`.
    """
    d = pl.col("billing_day").cast(pl.Int32)
    months = pl.col("term_months").cast(pl.Int32)
    b0 = pl.col("b0")
    k = (pl.lit(period_name_index(period), dtype=pl.Int32) - b0) // months
    plans = catalog.fee_plans.join(catalog.subscriptions, on="subscription_id")
    return (
        lifecycles.lazy()
        .filter(
            pl.col("billable")
            & pl.col("fee_plan_id").is_not_null()
            & pl.col("eff_start").is_not_null()
        )
        .select("account_id", "assignment_id", "addon_id", "fee_plan_id",
                pl.col("quantity").fill_null(1), "eff_start", "eff_end")
        .join(
            accounts.lazy().select("account_id", "billing_day", "period_start", "period_end"),
            on="account_id",
        )
        .join(plans.lazy(), on="fee_plan_id")
        .join(catalog.addons.lazy().select("addon_id", pl.col("name").alias("addon_name")),
              on="addon_id", how="left")
        .with_columns(b0=first_boundary_index_expr(pl.col("eff_start"), d))
        .with_columns(
            term_start=index_date_expr(b0 + k * months, d),
            term_end=index_date_expr(b0 + (k + 1) * months, d),
            # SPEC §7.1: terms count from 1; a partial first term (k = -1) is term 1.
            term_no=k.cast(pl.Int64) + 1
            + (pl.col("eff_start") != index_date_expr(b0, d)).cast(pl.Int64),
        )
        .with_columns(
            active_start=pl.max_horizontal("term_start", "eff_start"),
            active_end=pl.min_horizontal("term_end", pl.col("eff_end").fill_null(OPEN_END)),
        )
        .filter(pl.col("active_start") < pl.col("active_end"))
        .with_columns(
            full_days=days_between_expr(pl.col("term_start"), pl.col("term_end")),
            start_missing=days_between_expr(pl.col("term_start"), pl.col("active_start")),
            end_missing=days_between_expr(pl.col("active_end"), pl.col("term_end")),
        )
        .pipe(promotional_fees, catalog)
    )


def _in_period(day: pl.Expr) -> pl.Expr:
    return (day >= pl.col("period_start")) & (day < pl.col("period_end"))


def _description(prefix: pl.Expr, start: pl.Expr, end: pl.Expr, days: pl.Expr) -> pl.Expr:
    """E.g. `TV pack TV1 2026-06-11..2026-07-01 (20/30)`, with ` x3` for a quantity of 3."""
    times = pl.when(pl.col("quantity") > 1).then(pl.format(" x{}", "quantity")).otherwise(
        pl.lit("")
    )
    name = pl.coalesce("addon_name", "addon_id")
    return pl.format(
        "{}{} {} {}..{} ({}/{}){}{}", prefix, name, "fee_plan_id", start, end, days, "full_days",
        times, "promotion_label",
    )


def _fee_line(line_type: str, days: pl.Expr, sign: int, line_date: pl.Expr,
              description: pl.Expr) -> list[pl.Expr]:
    # fee × quantity in Int128: within the bounds it fits Int64, and an assignment stored before
    # the bounds existed fails the strict cast back to Int64 instead of wrapping.
    amount = prorate(
        pl.col("fee_minor").cast(pl.Int128) * pl.col("quantity"), days, pl.col("full_days")
    )
    return [
        pl.lit(line_type).alias("line_type"),
        (amount * sign).alias("amount_minor"),
        line_date.alias("line_date"),
        pl.col("active_start").alias("term_start"),
        description.alias("description"),
    ]


def _as_fee_lines(terms: pl.LazyFrame, when: pl.Expr, exprs: list[pl.Expr],
                  period: str) -> pl.LazyFrame:
    return as_lines(
        terms.filter(when).with_columns(
            *exprs,
            pl.lit(period).alias("period"),
            pl.lit(None, dtype=pl.Utf8).alias("service"),
            pl.lit(None, dtype=pl.Utf8).alias("destination_group"),
            (pl.col("quantity") * UNIT).alias("quantity_units"),
        )
    )


def periodic_fee_lines(terms: pl.LazyFrame, period: str) -> pl.LazyFrame:
    """`recurring` lines: in advance at the term's first active day, in arrears at its last."""
    first = pl.when(pl.col("prorate_first")).then(pl.col("start_missing")).otherwise(0)
    last = pl.when(pl.col("prorate_last")).then(pl.col("end_missing")).otherwise(0)
    advance = _fee_line(
        "recurring", pl.col("full_days") - first, 1, pl.col("active_start"),
        _description(pl.lit(""), pl.col("active_start"), pl.col("term_end"),
                     pl.col("full_days") - first),
    )
    arrears = _fee_line(
        "recurring", pl.col("full_days") - first - last, 1,
        pl.col("active_end").dt.offset_by("-1d"),
        _description(pl.lit(""), pl.col("active_start"), pl.col("active_end"),
                     pl.col("full_days") - first - last),
    )
    is_advance = pl.col("charge_mode") == "in_advance"
    last_day = pl.col("active_end").dt.offset_by("-1d")
    return pl.concat([
        _as_fee_lines(terms, is_advance & _in_period(pl.col("active_start")), advance, period),
        _as_fee_lines(terms, ~is_advance & _in_period(last_day), arrears, period),
    ])


def credit_lines(terms: pl.LazyFrame, period: str) -> pl.LazyFrame:
    """`credit` lines: the unused days of a prepaid term that the end cut short."""
    when = (
        (pl.col("charge_mode") == "in_advance")
        & pl.col("prorate_last")
        & pl.col("eff_end").is_not_null()
        & (pl.col("eff_end") < pl.col("term_end"))
        & _in_period(pl.col("eff_end"))
    )
    exprs = _fee_line(
        "credit", pl.col("end_missing"), -1, pl.col("eff_end"),
        _description(pl.lit("Credit "), pl.col("eff_end"), pl.col("term_end"),
                     pl.col("end_missing")),
    )
    return _as_fee_lines(terms, when, exprs, period)


def activation_lines(terms: pl.LazyFrame, period: str) -> pl.LazyFrame:
    """`activation` lines: the activation fee × quantity, once, in the period of activation."""
    times = pl.when(pl.col("quantity") > 1).then(pl.format(" x{}", "quantity")).otherwise(
        pl.lit("")
    )
    exprs = [
        pl.lit("activation").alias("line_type"),
        (pl.col("activation_fee_minor").cast(pl.Int128) * pl.col("quantity"))
        .cast(pl.Int64)
        .alias("amount_minor"),
        pl.col("eff_start").alias("line_date"),
        pl.col("eff_start").alias("term_start"),
        pl.format("Activation {} {} {}{}", pl.coalesce("addon_name", "addon_id"),
                  "fee_plan_id", "eff_start", times).alias("description"),
    ]
    return _as_fee_lines(terms, _in_period(pl.col("eff_start")), exprs, period)


def fee_lines(
    catalog: CatalogFrames, lifecycles: pl.DataFrame, accounts: pl.DataFrame, period: str,
    account_rows: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every fee line (recurring, credit, activation) of `period` dated before the day limit.

    `account_rows` (the account versions with `status`) give the suspension credits (SPEC §7.2).
    Zero activation fees and zero credits (a free plan) are left out; recurring lines are kept
    even at zero, so that a free plan still shows on the invoice.
    """
    rows = account_rows if account_rows is not None else pl.DataFrame()
    terms = fee_terms(catalog, lifecycles, accounts, period).cache()
    limit = accounts.lazy().select("account_id", "day_limit")
    lines = pl.concat([
        periodic_fee_lines(terms, period),
        credit_lines(terms, period),
        activation_lines(terms, period),
        suspension_credit_lines(catalog, terms, rows, accounts, period),
    ])
    return (
        lines.join(limit, on="account_id")
        .filter((pl.col("line_date") < pl.col("day_limit")) & ~is_silent())
        .drop("day_limit")
        .collect()
    )

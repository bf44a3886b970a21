"""Fee lines (SPEC §4 "Periodic fees", §8.1, §8.2): periodic fees, credits, activation fees and
early-termination fees.

The fees are charged on plan segments (`contracts.SEGMENT_SCHEMA`): a run of an assignment's days
on one fee plan. Without changes a billable life is one segment; a change of fee plan ends one
segment (billed as if the add-on ended that day) and starts the next (billed as if activated that
day, without an activation fee). Terms are aligned on the billing day, so exactly one term of a
segment overlaps each billing period. Within a segment, quantity steps (`QUANTITY_STEP_SCHEMA`)
weigh the days: over a whole term, what is charged comes to `fee × Σ (quantity of each active
day) / days_in_term`. From a term's day counts come:
- `in_advance`: the term's charge at the quantity of its first active day (dated that day), one
  more line per quantity change inside the term, `fee × (new − old) × days_to_term_end /
  days_in_term` (dated on the change; `recurring` when positive, `credit` when negative), and the
  credit of the unused days at the last quantity when the segment ends inside the term;
- `in_arrears`: one line, `fee × Σ (quantity × days) / days_in_term`, dated on its last active day.
Every amount is an exact ratio of integers rounded once, half away from zero.
"""

from __future__ import annotations

import polars as pl

from pipeline.catalog import UNIT, CatalogFrames
from pipeline.contracts import OPEN_END, QUANTITY_STEP_SCHEMA, SEGMENT_SCHEMA
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


def default_segments(lifecycles: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Segments and quantity steps of lives without changes: one segment of one step each, its
    plan's promotions applying, no early-termination fee."""
    billable = lifecycles.filter(
        pl.col("billable") & pl.col("fee_plan_id").is_not_null()
        & pl.col("eff_start").is_not_null()
    )
    segments = billable.select(
        "assignment_id", "account_id", "addon_id", pl.lit(0, pl.Int64).alias("seg_no"),
        "fee_plan_id", "eff_start", "eff_end", pl.col("quantity").fill_null(1),
        pl.lit(True).alias("promotions"), pl.lit(False).alias("owes_termination_fee"),
    ).cast(SEGMENT_SCHEMA)
    return segments, pl.DataFrame(schema=QUANTITY_STEP_SCHEMA)


_TERM_KEY = ["assignment_id", "seg_no", "active_start"]


def fee_terms(
    catalog: CatalogFrames, segments: pl.DataFrame, accounts: pl.DataFrame, period: str,
    quantity_steps: pl.DataFrame,
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(terms, pieces): one term row per plan segment with a fee plan and the term of it that
    overlaps `period`, and the quantity pieces of each term's active part.

    `accounts` is the coordinator's account context (`account_id, billing_day, period_start,
    period_end, day_limit`). A term row has `term_start, term_end` (the full term),
    `active_start, active_end` (its active part), `full_days, start_missing, end_missing`, and
    `quantity` (of its first active day), `q_last` (of its last), `q_days` (Σ quantity × active
    days). A piece is `_TERM_KEY`, `piece_start, piece_end, quantity, prev_quantity` (the
    quantity before it in the term, null for the first).
    """
    d = pl.col("billing_day").cast(pl.Int32)
    months = pl.col("term_months").cast(pl.Int32)
    b0 = pl.col("b0")
    k = (pl.lit(period_name_index(period), dtype=pl.Int32) - b0) // months
    plans = catalog.fee_plans.join(catalog.subscriptions, on="subscription_id")
    terms = (
        segments.lazy()
        .filter(pl.col("fee_plan_id").is_not_null() & pl.col("eff_start").is_not_null())
        .select("account_id", "assignment_id", "addon_id", "seg_no", "fee_plan_id",
                "eff_start", "eff_end", pl.col("quantity").alias("seg_quantity"), "promotions",
                "owes_termination_fee")
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
    ).cache()
    # A segment at one quantity (nearly all) is one piece, read off the term itself; only the
    # terms of segments whose quantity varies join their quantity steps.
    steady = terms.filter(pl.col("seg_quantity").is_not_null()).with_columns(
        quantity=pl.col("seg_quantity"),
        q_last=pl.col("seg_quantity"),
        q_days=pl.col("seg_quantity")
        * days_between_expr(pl.col("active_start"), pl.col("active_end")),
    )
    varying = terms.filter(pl.col("seg_quantity").is_null())
    cut = (
        varying.select(*_TERM_KEY, "active_end")
        .join(quantity_steps.lazy(), on=["assignment_id", "seg_no"])
        .with_columns(
            piece_start=pl.max_horizontal("q_from", "active_start"),
            piece_end=pl.min_horizontal(pl.col("q_until").fill_null(OPEN_END), "active_end"),
        )
        .filter(pl.col("piece_start") < pl.col("piece_end"))
        .sort(*_TERM_KEY, "piece_start")
        .with_columns(prev_quantity=pl.col("quantity").shift(1).over(_TERM_KEY))
        .select(*_TERM_KEY, "piece_start", "piece_end", "quantity", "prev_quantity")
    ).cache()
    weighed = cut.group_by(_TERM_KEY).agg(
        pl.col("quantity").first(),
        pl.col("quantity").last().alias("q_last"),
        (pl.col("quantity") * days_between_expr(pl.col("piece_start"), pl.col("piece_end")))
        .sum().alias("q_days"),
    )
    pieces = pl.concat([
        steady.select(*_TERM_KEY, pl.col("active_start").alias("piece_start"),
                      pl.col("active_end").alias("piece_end"), "quantity",
                      pl.lit(None, pl.Int64).alias("prev_quantity")),
        cut,
    ])
    return pl.concat([steady, varying.join(weighed, on=_TERM_KEY)], how="diagonal"), pieces


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


def _fee_line(line_type: str | pl.Expr, days: pl.Expr, sign: int, line_date: pl.Expr,
              description: pl.Expr, *, amount: pl.Expr | None = None,
              term_start: pl.Expr | None = None) -> list[pl.Expr]:
    # fee × quantity in Int128: within the bounds it fits Int64, and an assignment stored before
    # the bounds existed fails the strict cast back to Int64 instead of wrapping.
    if amount is None:
        amount = prorate(
            pl.col("fee_minor").cast(pl.Int128) * pl.col("quantity"), days, pl.col("full_days")
        )
    kind = pl.lit(line_type) if isinstance(line_type, str) else line_type
    return [
        kind.alias("line_type"),
        (amount * sign).alias("amount_minor"),
        line_date.alias("line_date"),
        (pl.col("active_start") if term_start is None else term_start).alias("term_start"),
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
    """`recurring` lines: in advance at the term's first active day, in arrears at its last.

    In arrears the days are weighed by their quantity; with a proration flag false, the days of
    the term before the plan started (after it ended) count at the first (last) quantity.
    """
    first = pl.when(pl.col("prorate_first")).then(pl.col("start_missing")).otherwise(0)
    last = pl.when(pl.col("prorate_last")).then(pl.col("end_missing")).otherwise(0)
    advance = _fee_line(
        "recurring", pl.col("full_days") - first, 1, pl.col("active_start"),
        _description(pl.lit(""), pl.col("active_start"), pl.col("term_end"),
                     pl.col("full_days") - first),
    )
    # Σ quantity × day over the term, the unprorated missing days included.
    weighed = (
        pl.col("q_days")
        + pl.when(pl.col("prorate_first")).then(0).otherwise(pl.col("start_missing"))
        * pl.col("quantity")
        + pl.when(pl.col("prorate_last")).then(0).otherwise(pl.col("end_missing"))
        * pl.col("q_last")
    )
    arrears = _fee_line(
        "recurring", pl.col("full_days") - first - last, 1,
        pl.col("active_end").dt.offset_by("-1d"),
        _description(pl.lit(""), pl.col("active_start"), pl.col("active_end"),
                     pl.col("full_days") - first - last),
        amount=prorate(pl.col("fee_minor").cast(pl.Int128), weighed, pl.col("full_days")),
    )
    is_advance = pl.col("charge_mode") == "in_advance"
    last_day = pl.col("active_end").dt.offset_by("-1d")
    return pl.concat([
        _as_fee_lines(terms, is_advance & _in_period(pl.col("active_start")), advance, period),
        _as_fee_lines(terms, ~is_advance & _in_period(last_day), arrears, period),
    ])


def credit_lines(terms: pl.LazyFrame, period: str) -> pl.LazyFrame:
    """`credit` lines: the unused days of a prepaid term that the end (of the add-on, or of its
    plan by a change of fee plan) cut short, at the quantity of the last active day."""
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
    return _as_fee_lines(terms.with_columns(pl.col("q_last").alias("quantity")), when, exprs,
                         period)


def quantity_change_lines(terms: pl.LazyFrame, pieces: pl.LazyFrame,
                          period: str) -> pl.LazyFrame:
    """SPEC §8.1: an `in_advance` term whose quantity changes on day C inside it gets one more
    line, `fee × (new − old) × days_from_C_to_term_end / days_in_term`, dated C: `recurring`
    when positive, `credit` when negative. Its line key's `term_start` is C."""
    changed = (
        pieces.filter(pl.col("prev_quantity").is_not_null()
                      & (pl.col("quantity") != pl.col("prev_quantity")))
        .select(*_TERM_KEY, "piece_start", pl.col("quantity").alias("new_quantity"),
                "prev_quantity")
        .join(terms.filter(pl.col("charge_mode") == "in_advance").drop("quantity"),
              on=_TERM_KEY)
        .with_columns((pl.col("new_quantity") - pl.col("prev_quantity")).alias("delta"))
    )
    days = days_between_expr(pl.col("piece_start"), pl.col("term_end"))
    amount = prorate(pl.col("fee_minor").cast(pl.Int128) * pl.col("delta"), days,
                     pl.col("full_days"))
    name = pl.coalesce("addon_name", "addon_id")
    exprs = _fee_line(
        pl.when(pl.col("delta") > 0).then(pl.lit("recurring")).otherwise(pl.lit("credit")),
        days, 1, pl.col("piece_start"),
        pl.format("Quantity {} to {}: {} {} {}..{} ({}/{}) x{}{}", "prev_quantity",
                  "new_quantity", name, "fee_plan_id", "piece_start", "term_end", days,
                  "full_days", pl.col("delta").abs(), "promotion_label"),
        amount=amount, term_start=pl.col("piece_start"),
    )
    return _as_fee_lines(
        changed.with_columns(pl.col("delta").abs().alias("quantity")),
        _in_period(pl.col("piece_start")), exprs, period,
    )


def termination_fee_lines(
    catalog: CatalogFrames, segments: pl.DataFrame, quantity_steps: pl.DataFrame,
    accounts: pl.DataFrame, period: str,
) -> pl.LazyFrame:
    """SPEC §8.2: `termination_fee` lines, `early_termination_fee × quantity` of the last active
    day, for each segment the rules found owing it, in the period that contains its end."""
    owing = segments.lazy().filter(pl.col("owes_termination_fee") & pl.col("eff_end").is_not_null())
    last_quantity = (
        quantity_steps.lazy().sort("assignment_id", "seg_no", "q_from")
        .group_by("assignment_id", "seg_no").agg(pl.col("quantity").last().alias("q_last"))
    )
    return as_lines(
        owing.join(last_quantity, on=["assignment_id", "seg_no"], how="left")
        .with_columns(pl.coalesce("quantity", "q_last").alias("quantity"))
        .join(accounts.lazy().select("account_id", "period_start", "period_end"),
              on="account_id")
        .filter(_in_period(pl.col("eff_end")))
        .join(catalog.fee_plans.lazy().select("fee_plan_id", "currency",
                                              "early_termination_fee_minor", "minimum_terms"),
              on="fee_plan_id")
        .join(catalog.addons.lazy().select("addon_id", pl.col("name").alias("addon_name")),
              on="addon_id", how="left")
        .with_columns(
            pl.lit(period).alias("period"),
            pl.lit("termination_fee").alias("line_type"),
            pl.lit(None, dtype=pl.Utf8).alias("service"),
            pl.lit(None, dtype=pl.Utf8).alias("destination_group"),
            (pl.col("quantity") * UNIT).alias("quantity_units"),
            (pl.col("early_termination_fee_minor").cast(pl.Int128) * pl.col("quantity"))
            .cast(pl.Int64).alias("amount_minor"),
            pl.col("eff_end").alias("line_date"),
            pl.col("eff_end").alias("term_start"),
            pl.format("Early termination {} {} ends {} before its {} terms{}",
                      pl.coalesce("addon_name", "addon_id"), "fee_plan_id", "eff_end",
                      "minimum_terms",
                      pl.when(pl.col("quantity") > 1).then(pl.format(" x{}", "quantity"))
                      .otherwise(pl.lit(""))).alias("description"),
        )
    )


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
    # Once, on activation: the first segment's first day, at that day's quantity (SPEC §8.1).
    first_day = (pl.col("seg_no") == 0) & (pl.col("active_start") == pl.col("eff_start"))
    return _as_fee_lines(terms, first_day & _in_period(pl.col("eff_start")), exprs, period)


def fee_lines(
    catalog: CatalogFrames, lifecycles: pl.DataFrame, accounts: pl.DataFrame, period: str,
    account_rows: pl.DataFrame | None = None, *, segments: pl.DataFrame | None = None,
    quantity_steps: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every fee line (recurring, credit, activation, suspension credit, termination fee) of
    `period` dated before the day limit.

    `segments` and `quantity_steps` are the rules' plan segments (SPEC §8.1); without them each
    billable life of `lifecycles` is one segment of one step. `account_rows` (the account
    versions with `status`) give the suspension credits (SPEC §7.2). Zero activation fees and
    zero credits (a free plan) are left out; recurring lines are kept even at zero, so that a
    free plan still shows on the invoice.
    """
    rows = account_rows if account_rows is not None else pl.DataFrame()
    if segments is None or quantity_steps is None:
        segments, quantity_steps = default_segments(lifecycles)
    terms, pieces = fee_terms(catalog, segments, accounts, period, quantity_steps)
    terms = terms.cache()
    limit = accounts.lazy().select("account_id", "day_limit")
    lines = pl.concat([
        periodic_fee_lines(terms, period),
        quantity_change_lines(terms, pieces, period),
        credit_lines(terms, period),
        activation_lines(terms, period),
        suspension_credit_lines(catalog, terms, pieces, rows, accounts, period),
        termination_fee_lines(catalog, segments, quantity_steps, accounts, period),
    ])
    return (
        lines.join(limit, on="account_id")
        .filter((pl.col("line_date") < pl.col("day_limit")) & ~is_silent())
        .drop("day_limit")
        .collect()
    )

"""Credit for suspended days (SPEC §7.2): `suspension_credit` lines.

An account row's `status` holds from its `effective_from` until the account's next row; a
suspension is the run of days under a `suspended` row. For an assignment whose subscription sets
`credit_suspended_days`, the term that overlaps the period is credited
`fee × quantity × suspended_days / days_in_term`, where the suspended days are those of the
period (before the day limit of a draft) on which the add-on is active: days after its end are
already in the removal credit. One line per assignment, term and period, rounded once.
"""

from __future__ import annotations

import polars as pl

from pipeline.catalog import UNIT, CatalogFrames
from pipeline.contracts import OPEN_END
from pipeline.invoices import as_lines
from pipeline.money import prorate
from pipeline.periods import days_between_expr

SUSPENSION_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(), "suspended_from": pl.Date(), "suspended_until": pl.Date(),
}


def suspensions(account_rows: pl.DataFrame) -> pl.DataFrame:
    """`account_id, suspended_from, suspended_until` (exclusive): the account's suspended runs."""
    if "status" not in account_rows.columns or account_rows.height == 0:
        return pl.DataFrame(schema=SUSPENSION_SCHEMA)
    return (
        account_rows.lazy()
        .select("account_id", "status", pl.coalesce(
            "effective_from", *(["opened_on"] if "opened_on" in account_rows.columns else [])
        ).alias("row_from"))
        .sort("account_id", "row_from")
        .with_columns(
            row_until=pl.col("row_from").shift(-1).over("account_id").fill_null(OPEN_END)
        )
        .filter((pl.col("status") == "suspended") & (pl.col("row_from") < pl.col("row_until")))
        .select("account_id", pl.col("row_from").alias("suspended_from"),
                pl.col("row_until").alias("suspended_until"))
        .collect()
    )


_TERM_KEY = ["account_id", "assignment_id", "seg_no", "active_start"]


def suspended_days(pieces: pl.LazyFrame, runs: pl.DataFrame) -> pl.LazyFrame:
    """Per term: `suspended_days` (active, in the period, before the day limit),
    `suspended_qdays` (the same days, each weighed by its quantity, SPEC §8.1), `first_day` and
    `last_day` of them;
    only terms with at least one such day. `pieces`: the quantity pieces of the terms, with
    the period bounds and day limit."""
    lo = pl.max_horizontal("piece_start", "period_start", "suspended_from")
    hi = pl.min_horizontal("piece_end", "period_end", "day_limit", "suspended_until")
    days = days_between_expr(pl.col("lo"), pl.col("hi"))
    return (
        pieces.join(runs.lazy(), on="account_id")
        .with_columns(lo=lo, hi=hi)
        .filter(pl.col("lo") < pl.col("hi"))
        .group_by(_TERM_KEY)
        .agg(
            days.sum().alias("suspended_days"),
            (days * pl.col("quantity")).sum().alias("suspended_qdays"),
            pl.col("lo").min().alias("first_day"),
            pl.col("hi").max().dt.offset_by("-1d").alias("last_day"),
        )
    )


def suspension_credit_lines(
    catalog: CatalogFrames, terms: pl.LazyFrame, pieces: pl.LazyFrame,
    account_rows: pl.DataFrame, accounts: pl.DataFrame, period: str,
) -> pl.LazyFrame:
    """`suspension_credit` lines of `period`: `terms` and their quantity `pieces` from
    `recurring.fee_terms`. Each suspended day is credited at its own quantity."""
    runs = suspensions(account_rows)
    credited = catalog.subscriptions.filter(pl.col("credit_suspended_days")).select(
        "subscription_id"
    )
    eligible = (
        terms.join(credited.lazy(), on="subscription_id", how="semi")
        .join(accounts.lazy().select("account_id", "day_limit"), on="account_id")
    )
    days = suspended_days(
        pieces.join(eligible.select(*_TERM_KEY, "period_start", "period_end", "day_limit"),
                    on=[k for k in _TERM_KEY if k != "account_id"]),
        runs,
    )
    times = pl.when(pl.col("quantity") > 1).then(pl.format(" x{}", "quantity")).otherwise(
        pl.lit("")
    )
    name = pl.coalesce("addon_name", "addon_id")
    amount = prorate(pl.col("fee_minor"), pl.col("suspended_qdays"), pl.col("full_days"))
    return as_lines(
        eligible.join(days, on=_TERM_KEY)
        .with_columns(
            pl.lit(period).alias("period"),
            pl.lit("suspension_credit").alias("line_type"),
            pl.lit(None, dtype=pl.Utf8).alias("service"),
            pl.lit(None, dtype=pl.Utf8).alias("destination_group"),
            (pl.col("quantity") * UNIT).alias("quantity_units"),
            (0 - amount).alias("amount_minor"),
            pl.col("last_day").alias("line_date"),
            pl.col("active_start").alias("term_start"),
            pl.format("Suspension credit {} {} {}..{} ({}/{} days suspended){}{}", name,
                      "fee_plan_id", "first_day", "last_day", "suspended_days", "full_days",
                      times, "promotion_label").alias("description"),
        )
    )


__all__ = ["SUSPENSION_SCHEMA", "suspended_days", "suspension_credit_lines",
           "suspensions"]

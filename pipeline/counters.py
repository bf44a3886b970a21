"""Discount counters across periods (SPEC §4 "Counters"): what carries into the next period,
and how far a reprocessed period moves the never-reset windows of later ones. Pure."""

from __future__ import annotations

import polars as pl

from pipeline.contracts import COUNTER_KEY


def carry_counters(stored: pl.DataFrame, carried: pl.DataFrame) -> pl.DataFrame:
    """Counters before a period: those carried from the previous period of this run win over
    the stored ones (which are older)."""
    columns = [*COUNTER_KEY, "value_units"]
    never = carried.filter(pl.col("reset") == "never").select(columns)
    return pl.concat([never, stored.select(columns)], how="vertical_relaxed").unique(
        subset=COUNTER_KEY, keep="first", maintain_order=True
    )


def counter_shift(old: pl.DataFrame, new: pl.DataFrame, period: str) -> pl.DataFrame:
    """How much each never-reset counter moved at the end of `period`: later periods move too."""
    never = pl.col("reset") == "never"
    joined = new.filter(never).join(
        old.filter(never), on=COUNTER_KEY, how="full", coalesce=True, suffix="_old"
    )
    return (
        joined.with_columns(
            (pl.col("value_units").fill_null(0) - pl.col("value_units_old").fill_null(0)).alias(
                "delta_units"
            )
        )
        .filter(pl.col("delta_units") != 0)
        .select(*COUNTER_KEY, pl.lit(period).alias("period"), "delta_units")
    )


def carry_parcels(stored: pl.DataFrame, carried: pl.DataFrame) -> pl.DataFrame:
    """Rollover parcels before a period (SPEC §7.3): those the previous period of this run left
    replace the stored ones of the same account and window (which are older)."""
    if carried.width == 0:
        return stored
    fresh = carried.select("account_id", "window_start").unique()
    kept = stored.join(fresh, on=["account_id", "window_start"], how="anti")
    return pl.concat([carried.select(stored.columns), kept], how="vertical_relaxed")

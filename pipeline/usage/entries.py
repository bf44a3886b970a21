"""Step 1: the catalog's discount entries, and the candidates that could discount a key.

Candidates are every billable add-on assignment whose discount plan has entries, and every
main-product version (`[effective_from, next effective_from)`, ended by the account's closing:
a closed account has no product) whose product has a plan, as day ranges clipped to the
period. To the whole period, not a draft's day limit: the events after it are not rated, but
the rollover's deciding entry (`rollover.py`) is the one the whole period has as the inputs
stand, so a draft decides as its final period will and as the next night's continuation of it
does (docs/RUNS.md, "Incremental nightly").
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.catalog import CatalogFrames
from pipeline.contracts import close_date
from pipeline.usage.keys import OPEN, OPEN_END, PAIR, RESET_CODES


@dataclass(frozen=True)
class Entries:
    """Catalog discount entries keyed by a dense `entry_key`, with tiers as arrays by key."""

    table: pl.DataFrame  # discount_plan_id, entry_no, entry_key, service, ..., reset, ckey, sdg
    pairs: pl.DataFrame  # sdg, service, destination_group: the pairs that some entry discounts
    tiers: list[tuple[pl.Series, pl.Series, pl.Series]]  # (from, to, pct) for tier 0..K-1
    is_amount: pl.Series  # Boolean by entry_key
    reset_code: pl.Series  # Int8 by entry_key

    def at(self, series: pl.Series) -> pl.Expr:
        """`series[entry_key]` for each row."""
        return pl.lit(series).gather(pl.col("entry_key"))


def discount_entries(catalog: CatalogFrames) -> Entries:
    """Number the catalog's discount entries and lay their tiers out as arrays by entry."""
    kinds = [*PAIR, "threshold_type", "reset"]
    table = catalog.discount_entries.sort("discount_plan_id", "entry_no").with_row_index(
        "entry_key"
    )
    ckeys = table.select(kinds).unique().sort(kinds).with_row_index("ckey")
    sdgs = table.select(PAIR).unique().sort(PAIR).with_row_index("sdg")
    table = table.join(ckeys, on=kinds).join(sdgs, on=PAIR).sort("entry_key")
    tiers = catalog.discount_tiers.join(
        table.select("discount_plan_id", "entry_no", "entry_key"),
        on=["discount_plan_id", "entry_no"],
    )
    depth = int(tiers["tier_no"].max() or 0) + 1 if tiers.height else 0
    arrays = []
    for k in range(depth):
        tier = table.select("entry_key").join(
            tiers.filter(pl.col("tier_no") == k), on="entry_key", how="left"
        ).sort("entry_key")
        arrays.append((
            tier["from_units"].fill_null(OPEN),
            tier["to_units"].fill_null(OPEN),
            tier["pct"].fill_null(0),
        ))
    return Entries(
        table=table,
        pairs=sdgs,
        tiers=arrays,
        is_amount=table["threshold_type"] == "amount",
        reset_code=table["reset"].replace_strict(RESET_CODES, return_dtype=pl.Int8),
    )


def discount_candidates(
    catalog: CatalogFrames,
    entries: Entries,
    account_rows: pl.DataFrame,
    lifecycles: pl.DataFrame,
    accounts: pl.DataFrame,
) -> pl.LazyFrame:
    """Add-on assignments and main-product versions with an entry, clipped to the period (module
    doc). An add-on's life cycle already ends on the account's closing (SPEC §3); a main-product
    version is ended there too, so no entry wins a closed account's days."""
    addons = (
        lifecycles.lazy()
        .filter(pl.col("billable") & pl.col("eff_start").is_not_null())
        .join(
            catalog.addons.lazy()
            .filter(pl.col("discount_plan_id").is_not_null())
            .select("addon_id", "priority", "discount_plan_id", pl.col("name").alias("owner")),
            on="addon_id",
        )
        .select(
            "account_id", "assignment_id", "addon_id",
            pl.col("assigned_at").cast(pl.Datetime("us")),
            pl.col("eff_start").alias("start"), pl.col("eff_end").alias("end"),
            pl.col("priority").cast(pl.Int64), "discount_plan_id", "owner",
            pl.lit(True).alias("is_addon"),
        )
    )
    closings = account_rows.lazy().group_by("account_id").agg(close_date().alias("closes"))
    mains = (
        account_rows.lazy()
        .select("account_id", "main_product_id", "effective_from")
        .sort("account_id", "effective_from")
        .with_columns(end=pl.col("effective_from").shift(-1).over("account_id"))
        .join(closings, on="account_id", how="left")
        .with_columns(end=pl.min_horizontal("end", "closes"))  # nulls aside: open stays open
        .join(
            catalog.main_products.lazy()
            .filter(pl.col("discount_plan_id").is_not_null())
            .select("main_product_id", "discount_plan_id", pl.col("name").alias("owner")),
            on="main_product_id",
        )
        .select(
            "account_id",
            pl.lit(None, dtype=pl.Utf8).alias("assignment_id"),
            pl.col("main_product_id").alias("addon_id"),
            pl.lit(None, dtype=pl.Datetime("us")).alias("assigned_at"),
            pl.col("effective_from").alias("start"), "end",
            pl.lit(None, dtype=pl.Int64).alias("priority"), "discount_plan_id", "owner",
            pl.lit(False).alias("is_addon"),
        )
    )
    return (
        pl.concat([addons, mains])
        .join(entries.table.lazy(), on="discount_plan_id")
        .join(
            accounts.lazy().select("account_id", "acct_idx", "period_start", "period_end"),
            on="account_id",
        )
        .with_columns(
            start=pl.max_horizontal("start", "period_start"),
            end=pl.min_horizontal(pl.col("end").fill_null(OPEN_END), "period_end"),
        )
        .filter(pl.col("start") < pl.col("end"))
    )

"""Step 6: `usage` and `discount` lines, and the per-event detail behind them."""

from __future__ import annotations

import polars as pl

from pipeline.contracts import USAGE_SUM_KEY, USAGE_SUM_SCHEMA
from pipeline.invoices import as_lines
from pipeline.money import MICRO, micro_to_minor, pico_to_minor, round_half_away
from pipeline.usage.entries import Entries
from pipeline.usage.keys import DETAIL_SCHEMA, KEY, PCT_TO_PICO


def line_sums(plain_sums: pl.DataFrame, discounted: pl.DataFrame, line_nos: pl.DataFrame,
              accounts: pl.DataFrame, before: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each usage line's exact sums (USAGE_SUM_SCHEMA): the events without an entry by event
    key, those with one by winner. `before`: the sums a draft of this period counted so far
    (`UsageSoFar.sums`), to which these events add."""
    plain = plain_sums.lazy().join(
        accounts.lazy().select("acct_idx", "account_id"), on="acct_idx"
    ).select(
        *KEY, "quantity_units", "amount_units",
        pl.lit(None, dtype=pl.Utf8).alias("assignment_id"),
        pl.lit(None, dtype=pl.Utf8).alias("addon_id"),
        pl.lit(None, dtype=pl.Utf8).alias("owner"),
        pl.lit(0, dtype=pl.Int128).alias("discount_pico"),
        pl.lit(0, dtype=pl.Int128).alias("discounted_units"),
    )
    with_entry = (
        discounted.lazy()
        .group_by("line_no")
        .agg(
            pl.col("quantity_units").sum(), pl.col("amount_units").sum(),
            pl.col("discount_pico").sum(), pl.col("discounted_units").cast(pl.Int128).sum(),
        )
        .join(line_nos.lazy(), on="line_no")
        .select(plain.collect_schema().names())
    )
    parts = [plain, with_entry]
    if before is not None:
        parts.append(before.lazy())
    sums = pl.concat([p.select([pl.col(n).cast(t) for n, t in USAGE_SUM_SCHEMA.items()])
                      for p in parts])
    if before is not None:  # each identity once: what was counted plus what these events add
        sums = sums.group_by(USAGE_SUM_KEY, maintain_order=True).agg(
            pl.col(n).sum() for n in USAGE_SUM_SCHEMA if n not in USAGE_SUM_KEY
        )
    return sums.collect()


def usage_lines(line_sums: pl.DataFrame, accounts: pl.DataFrame, period: str) -> pl.DataFrame:
    """`usage` lines (undiscounted amounts) and `discount` lines (minus the discount), each
    rounded once from its exact sums."""
    sums = line_sums.lazy().join(
        accounts.lazy().select("account_id", "currency", "minor_factor", "day_limit"),
        on="account_id",
    )
    label = pl.format("{} {}", "service", "destination_group")
    owner = pl.when(pl.col("assignment_id").is_null()).then(
        pl.format("{} (main product)", "owner")
    ).otherwise(pl.col("owner"))
    common = [
        pl.lit(period).alias("period"),
        pl.lit(None, dtype=pl.Date).alias("term_start"),
        pl.col("day_limit").dt.offset_by("-1d").alias("line_date"),
    ]
    usage = sums.with_columns(
        *common,
        pl.lit("usage").alias("line_type"),
        micro_to_minor(pl.col("amount_units"), pl.col("minor_factor")).alias("amount_minor"),
        pl.when(pl.col("owner").is_null()).then(pl.format("Usage {}", label))
        .otherwise(pl.format("Usage {}: {}", label, owner)).alias("description"),
    )
    discount = sums.filter(pl.col("addon_id").is_not_null()).with_columns(
        *common,
        pl.lit("discount").alias("line_type"),
        (0 - pico_to_minor(pl.col("discount_pico"), pl.col("minor_factor"))).alias(
            "amount_minor"
        ),
        pl.col("discounted_units").alias("quantity_units"),
        pl.format("Discount {}: {}", label, owner).alias("description"),
    )
    return pl.concat([as_lines(usage), as_lines(discount)]).collect()


def usage_detail(discounted: pl.DataFrame, entries: Entries, line_nos: pl.DataFrame,
                 accounts: pl.DataFrame) -> pl.DataFrame:
    """One row per event part: the tier it fell in, its counter range, quantity, amount, discount.

    Parts of a split event are rounded cumulatively (at 10^-12), so they add up exactly to the
    event's quantity, amount and discount.
    """
    if discounted.height == 0 or not entries.tiers:
        return pl.DataFrame(schema=DETAIL_SCHEMA)
    flat = [pl.concat([t[i] for t in entries.tiers]) for i in range(3)]  # index: k * E + key

    def tier_value(series: pl.Series) -> pl.Expr:
        index = pl.col("tier_no") * len(entries.table) + pl.col("entry_key").cast(pl.Int64)
        return pl.lit(series).gather(index)

    keep = ["event_id", "acct_idx", "started_at", "line_no", "entry_key", "window_start", "c0",
            "c1", "x", "quantity_units", "amount_units", "discount_pico", "carry_units"]
    single = discounted.lazy().filter(pl.col("tier_lo") == pl.col("tier_hi")).select(
        *keep, pl.col("tier_lo").cast(pl.Int64).alias("tier_no")
    ).with_columns(
        pct=tier_value(flat[2]),
        counter_from_units=pl.col("c0"),
        counter_to_units=pl.col("c1"),
        part_quantity=pl.col("quantity_units").cast(pl.Int64),
        amount_pico=pl.col("amount_units").cast(pl.Int128) * MICRO,
        part_discount=pl.col("discount_pico"),
    )
    i128 = pl.Int128
    x = pl.col("x").cast(i128)
    carry = pl.col("carry_units")  # SPEC §7.3: tiers after the first move up by C
    shifted_from = tier_value(flat[0]) + pl.when(pl.col("tier_no") > 0).then(carry).otherwise(0)
    lower = pl.max_horizontal(pl.col("c0"), shifted_from)
    upper = pl.min_horizontal(pl.col("c1"), tier_value(flat[1]) + carry)
    before, through = (lower - pl.col("c0")).cast(i128), (upper - pl.col("c0")).cast(i128)
    in_tier = (upper - lower).cast(i128) * pl.col("pct")
    amount = pl.col("amount_units").cast(i128)

    def share(total: pl.Expr, upto: pl.Expr) -> pl.Expr:
        return round_half_away(total * upto, x)

    split = (
        discounted.lazy()
        .filter(pl.col("tier_lo") != pl.col("tier_hi"))
        .select(*keep, pl.int_ranges("tier_lo", pl.col("tier_hi") + 1, dtype=pl.Int64)
                .alias("tier_no"))
        .explode("tier_no")
        .with_columns(pct=tier_value(flat[2]))
        .with_columns(weighted=in_tier.cum_sum().over("event_id"))
        .with_columns(
            counter_from_units=lower,
            counter_to_units=upper,
            part_quantity=(
                share(pl.col("quantity_units").cast(i128), through)
                - share(pl.col("quantity_units").cast(i128), before)
            ).cast(pl.Int64),
            amount_pico=share(amount * MICRO, through) - share(amount * MICRO, before),
            part_discount=share(amount * PCT_TO_PICO, pl.col("weighted"))
            - share(amount * PCT_TO_PICO, pl.col("weighted") - in_tier),
        )
        .drop("weighted")
    )
    return (
        pl.concat([single, split])
        .join(line_nos.lazy().select("line_no", *KEY, "assignment_id", "addon_id"),
              on="line_no")
        .join(entries.table.lazy().select("entry_key", "threshold_type", "reset"), on="entry_key")
        .select(
            "event_id", *KEY, "started_at", "assignment_id", "addon_id", "threshold_type",
            "reset", "window_start", "tier_no", "pct", "counter_from_units", "counter_to_units",
            pl.col("part_quantity").alias("quantity_units"), "amount_pico",
            pl.col("part_discount").alias("discount_pico"),
        )
        .select([pl.col(n).cast(t) for n, t in DETAIL_SCHEMA.items()])
        .sort("account_id", "started_at", "event_id", "tier_no")
        .collect(engine="streaming")
    )

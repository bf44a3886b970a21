"""Quota rollover (SPEC §7.3): carried allowance widens the free band; unused allowance carries.

For each account and counter key whose entries roll over, the period's *deciding* entry is the
entry that wins the key on the period's last winning interval (the latest add-on in force). The
timeline covers the whole period, not a draft's day limit, and no entry wins a closed account's
days (`entries.discount_candidates`): a draft decides as its final period will, so what a
continued draft counted under it still holds the next night. If it rolls over (the rules'
verdict, `CatalogFrames.rollover_entries`):
- `C`, the carried parcels still unexpired at the period's start, moves the free band to
  `Q + C` and every later tier up by `C` (`carry_units`, applied by `tiers` and `lines`);
- the allowance used, `min(counter at the period's end, Q + C)`, is taken from the parcels that
  expire first (carried ones oldest first, the period's own `Q` last);
- what is left of `Q` becomes a parcel expiring after `N` more periods; carried parcels keep
  their expiry.
With a deciding entry without rollover, or none at all, carried parcels are not used but still
expire on schedule. Everything is a join, a sort and a cumulative sum: no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.contracts import PARCEL_SCHEMA
from pipeline.promotions import MissingVerdicts
from pipeline.usage.entries import Entries
from pipeline.usage.keys import KeyBudget

COUNTER_KEY_COLUMNS = ["service", "destination_group", "threshold_type"]
# What explain shows for each quota: parcels available, used and left in the period.
PARCEL_USE_SCHEMA: dict[str, pl.DataType] = {
    **{name: dtype for name, dtype in PARCEL_SCHEMA.items() if name != "remaining_units"},
    "available_units": pl.Int64(),
    "used_units": pl.Int64(),
    "left_units": pl.Int64(),
}
CARRY_SCHEMA: dict[str, pl.DataType] = {
    "acct_idx": pl.UInt32(), "ckey": pl.UInt32(), "carry_units": pl.Int64(),
}


@dataclass(frozen=True)
class Rollover:
    """The period's rollover state: carried allowance per (account, counter key), the deciding
    entries, and the parcels available at the period's start."""

    carry: pl.DataFrame  # acct_idx, ckey, carry_units
    deciding: pl.DataFrame  # acct_idx, ckey, rollover, allowance_units
    available: pl.DataFrame  # acct_idx, ckey, granted/expires, remaining_units, usable


def empty_parcels() -> pl.DataFrame:
    """A frame of `PARCEL_SCHEMA` with no rows."""
    return pl.DataFrame(schema=PARCEL_SCHEMA)


def _rolling_entries(entries: Entries, verdicts: pl.DataFrame | None) -> pl.DataFrame:
    """entry_key, ckey, rollover N (>= 1), allowance Q (the second tier's from)."""
    if verdicts is None or verdicts.height == 0 or len(entries.tiers) < 2:
        return pl.DataFrame(schema={"entry_key": pl.UInt32, "ckey": pl.UInt32,
                                    "rollover": pl.Int64, "allowance_units": pl.Int64})
    allowance = entries.tiers[1][0]
    return (
        entries.table.with_columns(allowance_units=pl.lit(allowance))
        .join(verdicts.select("discount_plan_id", "entry_no", "rollover"),
              on=["discount_plan_id", "entry_no"])
        .select("entry_key", "ckey", pl.col("rollover").cast(pl.Int64),
                pl.col("allowance_units").cast(pl.Int64))
    )


def _period_kinds(entries: Entries) -> pl.DataFrame:
    """ckey and counter key of the billing-period counters (the only ones that roll over)."""
    return (
        entries.table.filter(pl.col("reset") == "billing_period")
        .select("ckey", *COUNTER_KEY_COLUMNS)
        .unique("ckey")
    )


def _check_no_rollover_applies(entries: Entries, timeline: pl.DataFrame) -> None:
    """Without the rules' verdicts, fail if an entry with `rollover` wins somewhere."""
    rolls = entries.table.filter(pl.col("rollover") > 0)["entry_key"]
    if rolls.len() and timeline.filter(pl.col("entry_key").is_in(rolls.implode())).height:
        raise MissingVerdicts(
            "a discount entry rolls over: run rules.promotions.with_verdicts on the catalog"
        )


def rollover_state(entries: Entries, timeline: pl.DataFrame, budget: KeyBudget,
                   accounts: pl.DataFrame, parcels_before: pl.DataFrame,
                   verdicts: pl.DataFrame | None) -> Rollover:
    """Deciding entries, available parcels and the carried allowance `C` of the period."""
    if verdicts is None:
        _check_no_rollover_applies(entries, timeline)
    rolling = _rolling_entries(entries, verdicts)
    kinds = _period_kinds(entries)
    acct = (pl.col("key") // (1 << budget.pair_bits)).cast(pl.UInt32).alias("acct_idx")
    deciding = (
        timeline.lazy()
        .filter(pl.col("entry_key").is_not_null()
                & pl.col("ckey").is_in(rolling["ckey"].implode()))
        .select(acct, "ckey", "entry_key", "b")
        .sort("acct_idx", "ckey", "b")
        .group_by("acct_idx", "ckey")
        .agg(pl.col("entry_key").last())
        .join(rolling.lazy().select("entry_key", "rollover", "allowance_units"), on="entry_key",
              how="left")
        .with_columns(pl.col("rollover").fill_null(0), pl.col("allowance_units").fill_null(0))
        .drop("entry_key")
        .collect()
    )
    previous = accounts.select(
        "account_id", "acct_idx", "period_start",
        pl.col("period_start").dt.offset_by("-1mo").alias("previous_start"),
    )
    available = (
        parcels_before.lazy()
        .join(previous.lazy(), on="account_id")
        .filter((pl.col("window_start") == pl.col("previous_start"))
                & (pl.col("expires_after_window_start") >= pl.col("period_start")))
        .join(kinds.lazy(), on=COUNTER_KEY_COLUMNS)
        .join(deciding.lazy().select("acct_idx", "ckey", "rollover"), on=["acct_idx", "ckey"],
              how="left")
        .with_columns(usable=pl.col("rollover").fill_null(0) >= 1)
        .select("acct_idx", "ckey", "granted_window_start", "expires_after_window_start",
                pl.col("remaining_units").cast(pl.Int64), "usable")
        .collect()
    )
    carry = (
        available.filter("usable")
        .group_by("acct_idx", "ckey")
        .agg(pl.col("remaining_units").sum().alias("carry_units"))
        .select([pl.col(n).cast(t) for n, t in CARRY_SCHEMA.items()])
    )
    return Rollover(carry=carry, deciding=deciding, available=available)


def with_carry(counted: pl.DataFrame, rollover: Rollover) -> pl.DataFrame:
    """Counted events with `carry_units`: `C` on the period window of a rolling key, else 0."""
    return counted.join(
        rollover.carry, on=["acct_idx", "ckey"], how="left", maintain_order="left"
    ).with_columns(pl.col("carry_units").fill_null(0))


def _period_window_ends(windows: pl.DataFrame, entries: Entries,
                        accounts: pl.DataFrame) -> pl.LazyFrame:
    """`acct_idx, ckey, counter_units` of the period windows among the open ones (a draft's)."""
    ckeys = entries.table.select("ckey", *COUNTER_KEY_COLUMNS, "reset").unique("ckey")
    return (
        windows.lazy()
        .join(accounts.lazy().select("acct_idx", "account_id", "period_start"), on="account_id")
        .filter((pl.col("reset") == "billing_period")
                & (pl.col("window_start") == pl.col("period_start")))
        .join(ckeys.lazy(), on=[*COUNTER_KEY_COLUMNS, "reset"])
        .select("acct_idx", "ckey", pl.col("value_units").cast(pl.Int128).alias("counter_units"))
    )


def parcels_after(rollover: Rollover, discounted: pl.DataFrame, entries: Entries,
                  accounts: pl.DataFrame, windows: pl.DataFrame,
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The parcels left at the period's end (`PARCEL_SCHEMA`) and their use (`PARCEL_USE_SCHEMA`).

    Used allowance `min(counter, Q + C)` is taken from the parcels sorted by expiry, then grant.
    `windows`: the counter windows the period continues (`counters.open_windows`); a draft's
    period window that no new event touched ends where the draft left it.
    """
    ends = (
        discounted.lazy()
        .join(accounts.lazy().select("acct_idx", "period_start"), on="acct_idx")
        .filter(pl.col("window_start") == pl.col("period_start"))
        .select("acct_idx", "ckey", pl.col("c1").cast(pl.Int128).alias("counter_units"))
    )
    ends = pl.concat([ends, _period_window_ends(windows, entries, accounts)])
    ends = ends.group_by("acct_idx", "ckey").agg(pl.col("counter_units").max())
    context = accounts.lazy().select("acct_idx", "account_id", "period_start")
    own = (
        rollover.deciding.lazy()
        .filter(pl.col("rollover") >= 1)
        .join(context, on="acct_idx")
        .select(
            "acct_idx", "ckey",
            pl.col("period_start").alias("granted_window_start"),
            pl.col("period_start").dt.offset_by(pl.format("{}mo", "rollover"))
            .alias("expires_after_window_start"),
            pl.col("allowance_units").alias("remaining_units"),
            pl.lit(True).alias("usable"),
        )
    )
    parcels = pl.concat([rollover.available.lazy(), own], how="vertical_relaxed")
    order = ["acct_idx", "ckey", "expires_after_window_start", "granted_window_start"]
    usable = pl.col("usable")
    budget = pl.when(usable).then("remaining_units").otherwise(0)
    used_before = budget.cum_sum().over("acct_idx", "ckey") - budget  # rows sorted by `order`
    take = pl.min_horizontal(
        budget, (pl.col("counter_units").fill_null(0) - used_before).clip(lower_bound=0)
    )
    use = (
        parcels.join(ends, on=["acct_idx", "ckey"], how="left")
        .sort(order)
        .with_columns(used_units=take)
        .with_columns(left_units=pl.col("remaining_units") - pl.col("used_units"))
        .join(context, on="acct_idx")
        .join(_period_kinds(entries).lazy(), on="ckey")
        .select(
            "account_id", *COUNTER_KEY_COLUMNS, pl.col("period_start").alias("window_start"),
            "granted_window_start", "expires_after_window_start",
            pl.col("remaining_units").alias("available_units"), "used_units", "left_units",
        )
        .select([pl.col(n).cast(t) for n, t in PARCEL_USE_SCHEMA.items()])
        .sort("account_id", *COUNTER_KEY_COLUMNS, "expires_after_window_start",
              "granted_window_start")
        .collect()
    )
    left = use.filter(
        (pl.col("left_units") > 0)
        & (pl.col("expires_after_window_start") > pl.col("window_start"))
    ).select(
        "account_id", *COUNTER_KEY_COLUMNS, "window_start", "granted_window_start",
        "expires_after_window_start", pl.col("left_units").alias("remaining_units"),
    ).select([pl.col(n).cast(t) for n, t in PARCEL_SCHEMA.items()])
    return left, use

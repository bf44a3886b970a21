"""Step 3: one streaming pass over the usage, split by whether an entry discounts an event."""

from __future__ import annotations

import polars as pl

from pipeline.usage.entries import Entries
from pipeline.usage.keys import KEY, PAIR, KeyBudget

# Up to this many discounted (service, destination group) pairs are matched by comparisons.
MAX_COMPARED_PAIRS = 16


def with_pair_index(frame: pl.LazyFrame, pairs: pl.DataFrame) -> pl.LazyFrame:
    """Add `sdg`, the index of the row's (service, destination group) among the discounted
    pairs, or null. A few pairs are matched by comparisons (cheaper than a join on two strings
    over every event); many pairs by a join."""
    if pairs.height > MAX_COMPARED_PAIRS:
        return frame.join(pairs.lazy(), on=PAIR, how="left")
    index: pl.Expr = pl.lit(None, dtype=pl.UInt32)
    for sdg, service, group in reversed(pairs.select("sdg", *PAIR).rows()):
        match = (pl.col("service") == service) & (pl.col("destination_group") == group)
        index = pl.when(match).then(pl.lit(sdg, dtype=pl.UInt32)).otherwise(index)
    return frame.with_columns(sdg=index)


def rated_events(
    usage: pl.DataFrame, accounts: pl.DataFrame, entries: Entries, timeline: pl.DataFrame,
    budget: KeyBudget,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's events before the day limit, split by whether an entry discounts them.

    Returns the sums of the events without an entry by `(acct_idx, service,
    destination_group)`, and the events with one (lean: ids, time, quantity, amount, entry).
    Both come from one streaming pass over the usage.
    """
    day = pl.col("started_at").dt.date()
    events = (
        usage.lazy()
        .select(
            "event_id", *KEY, "started_at",
            # Int128 from here on: sums and running counters over many events must not wrap
            # (Polars' Int64 sums do, silently); lines and counters come back to Int64 through
            # a strict cast, which fails loudly instead (pipeline/bounds.py).
            pl.col("quantity_units").cast(pl.Int128), pl.col("amount_units").cast(pl.Int128),
        )
        .join(
            accounts.lazy().select("account_id", "acct_idx", "period_start", "day_limit"),
            on="account_id",
        )
        .filter((day >= pl.col("period_start")) & (day < pl.col("day_limit")))
        .pipe(with_pair_index, entries.pairs)
        .with_columns(key=budget.pair_key(pl.col("acct_idx"), pl.col("sdg")))
        .join(timeline.lazy(), on="key", how="left")
        .filter(pl.col("b").is_null() | ((day >= pl.col("b")) & (day < pl.col("b_end"))))
    )
    sums = [pl.col("quantity_units").sum(), pl.col("amount_units").sum()]
    no_entry = events.filter(pl.col("entry_key").is_null())
    known = no_entry.filter(pl.col("sdg").is_not_null()).group_by("acct_idx", "sdg").agg(*sums)
    other = no_entry.filter(pl.col("sdg").is_null()).group_by(
        "acct_idx", "service", "destination_group"
    ).agg(*sums)
    with_entry = events.filter(pl.col("entry_key").is_not_null()).select(
        "event_id", "acct_idx", "started_at", "quantity_units", "amount_units", "period_start",
        "entry_key", "ckey", "line_no",
    )
    known_sums, other_sums, discountable = pl.collect_all(
        [known, other, with_entry], engine="streaming"
    )
    plain_sums = pl.concat([
        known_sums.join(entries.pairs, on="sdg").select(
            "acct_idx", "service", "destination_group", "quantity_units", "amount_units"
        ),
        other_sums,
    ])
    return plain_sums, discountable

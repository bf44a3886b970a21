"""Step 2: the winner timeline of each `(account, service, destination_group)`.

The period's days are cut into elementary intervals at every candidate start and end; each
interval takes its winning candidate: add-ons before the main product, then the higher
`priority`, then the later `(assigned_at, assignment_id)`. Each event later joins its key's
intervals and keeps the one that holds its day, so no per-event ranking is needed.
"""

from __future__ import annotations

import polars as pl

from pipeline.usage.keys import KEY, KeyBudget


def _winner_columns(frame: pl.DataFrame | pl.LazyFrame, blank: bool) -> list[pl.Expr]:
    """The winner's identity and entry, or typed nulls for an interval nobody covers."""
    names = ["rank", *KEY, "assignment_id", "addon_id", "owner", "entry_key", "ckey"]
    schema = frame.collect_schema()
    return [
        pl.lit(None, dtype=schema[n]).alias(n) if blank else pl.col(n) for n in names
    ]


def _lone_intervals(lone: pl.DataFrame) -> pl.DataFrame:
    """Intervals of keys with one candidate: the gap before it, the candidate, the gap after."""
    def part(start: str, end: str, blank: bool) -> pl.DataFrame:
        return lone.select(
            "key", pl.col(start).alias("b"), pl.col(end).alias("b_end"),
            *_winner_columns(lone, blank),
        ).filter(pl.col("b") < pl.col("b_end"))

    return pl.concat([
        part("period_start", "start", True),
        part("start", "end", False),
        part("end", "period_end", True),
    ])


def _shared_intervals(shared: pl.DataFrame) -> pl.DataFrame:
    """Elementary intervals of keys with several candidates, each with its best candidate."""
    kb = pl.concat([
        shared.select(KeyBudget.day_key(pl.col("key"), pl.col(c)).alias("kb"))
        for c in ("start", "end", "period_start", "period_end")
    ]).sort("kb")
    kb = kb.filter((pl.col("kb") != pl.col("kb").shift(1)).fill_null(True))
    bounds = kb.select(
        "kb",
        KeyBudget.key_of(pl.col("kb")).alias("key"),
        KeyBudget.day_of(pl.col("kb")).alias("b"),
    )
    intervals = bounds.with_columns(
        b_end=pl.when(pl.col("key") == pl.col("key").shift(-1)).then(pl.col("b").shift(-1))
    ).filter(pl.col("b_end").is_not_null())
    best = (
        intervals.lazy()
        .join(shared.lazy().select("key", "start", "end", "rank"), on="key")
        .filter((pl.col("start") <= pl.col("b")) & (pl.col("b") < pl.col("end")))
        .group_by("kb")
        .agg(pl.col("rank").max())
    )
    return (
        intervals.lazy()
        .join(best, on="kb", how="left")
        .join(shared.lazy().drop("key"), on="rank", how="left")
        .select("key", "b", "b_end", *_winner_columns(shared, False))
        .collect()
    )


def winner_timeline(
    candidates: pl.LazyFrame, budget: KeyBudget
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Elementary day intervals `[b, b_end)` tiling each key's period, with the winner.

    Keyed by `key` (account and service/destination pair, see `KeyBudget.pair_key`). The
    winner columns are null on intervals that no candidate covers. A key with one candidate
    (most keys) gives at most three intervals directly; keys with several are cut at every
    bound and each piece goes to the covering candidate of highest `rank`, the candidates'
    order by precedence (add-on before main product, then priority, then `(assigned_at,
    assignment_id)`). Each winning identity (key, assignment, add-on or main product) gets a
    `line_no`, described by the second frame.
    """
    precedence = ["is_addon", "priority", "assigned_at", "assignment_id"]
    key = pl.col("key")
    cands = (
        candidates.with_columns(key=budget.pair_key(pl.col("acct_idx"), pl.col("sdg")))
        .collect()
        .sort("key")
        .with_columns(
            alone=(key != key.shift(1)).fill_null(True) & (key != key.shift(-1)).fill_null(True)
        )
    )
    lone = cands.filter("alone").with_columns(rank=pl.lit(0, dtype=pl.UInt32))
    shared = (
        cands.filter(~pl.col("alone"))
        .sort("key", *precedence, nulls_last=False)
        .with_row_index("rank")
    )
    timeline = pl.concat([_lone_intervals(lone), _shared_intervals(shared)])
    owners = ["key", "assignment_id", "addon_id"]
    line_nos = (
        timeline.filter(pl.col("rank").is_not_null())
        .select(*owners, *KEY, "owner")
        .unique(subset=owners)
        .with_row_index("line_no")
    )
    timeline = timeline.join(
        line_nos.select(*owners, "line_no"), on=owners, how="left", nulls_equal=True
    ).select("key", "b", "b_end", "entry_key", "ckey", "line_no")
    return timeline, line_nos.drop("key")

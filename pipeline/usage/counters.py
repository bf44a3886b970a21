"""Step 4: counters. Events with an entry are sorted by counter window and
`(started_at, event_id)`; one cumulative sum gives each event's counter before (`c0`) and after
(`c1`) it. Counters are keyed by account, service, destination group, threshold type and window,
never by add-on. The windows a period continues (`open_windows`) are the never-reset ones, or,
for a draft continued from what it counted so far (`UsageSoFar.counters`), every one it left.
"""

from __future__ import annotations

import polars as pl

from pipeline.contracts import typed
from pipeline.usage.entries import Entries
from pipeline.usage.keys import COUNTER_KIND, COUNTER_SCHEMA, NEVER_START, RESET_CODES, WINDOW


def open_windows(counters_before: pl.DataFrame, so_far: pl.DataFrame | None = None,
                 ) -> pl.DataFrame:
    """The counter windows a period's events continue (COUNTER_SCHEMA, with `reset`).

    Before a period, only `never` windows (starting 1970-01-01) are open: billing-period and
    daily windows are recomputed from the period's own events, so a stored value for them is
    ignored. A draft continued from what it counted (`so_far`, `UsageSoFar.counters`) continues
    every window it left; `reset` tells a daily window from a period window opening that day.
    """
    if so_far is not None:
        return typed(so_far, COUNTER_SCHEMA)
    return typed(
        counters_before.filter(pl.col("window_start") == NEVER_START)
        .with_columns(pl.lit("never").alias("reset")),
        COUNTER_SCHEMA,
    )


def counted_events(events: pl.DataFrame, entries: Entries, accounts: pl.DataFrame,
                   windows: pl.DataFrame) -> pl.DataFrame:
    """Events with an entry, sorted by counter window and time, with counters `c0` and `c1`.

    `head` marks the first event of each window; the value of an open window it continues
    (`windows`, see `open_windows`) is added on it before one cumulative sum.
    """
    reset = entries.at(entries.reset_code)
    window = (
        pl.when(reset == RESET_CODES["daily"]).then(pl.col("started_at").dt.date())
        .when(reset == RESET_CODES["never"]).then(pl.lit(NEVER_START))
        .otherwise(pl.col("period_start"))
    )
    x = pl.when(entries.at(entries.is_amount)).then("amount_units").otherwise("quantity_units")
    order = ["acct_idx", "ckey", "window_start", "started_at", "event_id"]
    frame = (
        events.lazy()
        .with_columns(window_start=window, x=x)
        .drop("period_start")
        .sort(order)
        .collect(engine="streaming")
    )
    changed = [pl.col(c) != pl.col(c).shift(1) for c in ("acct_idx", "ckey", "window_start")]
    frame = frame.with_columns(head=pl.any_horizontal(changed).fill_null(True))
    base = _counter_base(frame, entries, accounts, windows)
    y = pl.col("x") + pl.lit(base)
    running = y.cum_sum()
    offset = pl.when(pl.col("head")).then(running - y).forward_fill()
    return frame.with_columns(c1=running - offset).with_columns(c0=pl.col("c1") - pl.col("x"))


def _counter_base(frame: pl.DataFrame, entries: Entries, accounts: pl.DataFrame,
                  windows: pl.DataFrame) -> pl.Series:
    """The open windows' values, placed on the first event of each window they continue."""
    base = pl.zeros(frame.height, dtype=pl.Int128, eager=True).alias("base")
    if windows.height == 0 or frame.height == 0:
        return base
    heads = (
        frame.lazy()
        .with_row_index("row")
        .filter(pl.col("head"))
        .select("row", "acct_idx", "window_start", "entry_key")
        .join(accounts.lazy().select("acct_idx", "account_id"), on="acct_idx")
        .join(entries.table.lazy().select("entry_key", *COUNTER_KIND, "reset"), on="entry_key")
        .join(windows.lazy().select(*WINDOW, "reset", "value_units"), on=[*WINDOW, "reset"])
        .collect()
    )
    return base.scatter(heads["row"], heads["value_units"].cast(pl.Int128))


def counters_after(discounted: pl.DataFrame, entries: Entries, windows: pl.DataFrame,
                   accounts: pl.DataFrame) -> pl.DataFrame:
    """One row per window touched (its value after the last event) or carried (an open window,
    see `open_windows`, that no event touched)."""
    last = pl.col("head").shift(-1).fill_null(True)
    touched = (
        discounted.lazy()
        .filter(last)
        # Counted in Int128; beyond Int64 the strict cast fails the run instead of wrapping.
        .select("acct_idx", "entry_key", "window_start",
                pl.col("c1").cast(pl.Int64).alias("value_units"))
        .join(accounts.lazy().select("acct_idx", "account_id"), on="acct_idx")
        .join(entries.table.lazy().select("entry_key", *COUNTER_KIND, "reset"), on="entry_key")
        .select(*WINDOW, "value_units", "reset")
    )
    carried = (
        windows.lazy()
        .join(accounts.lazy().select("account_id"), on="account_id", how="semi")
        .select(*WINDOW, "value_units", "reset")
        .join(touched, on=[*WINDOW, "reset"], how="anti")
    )
    return (
        pl.concat([touched, carried])
        .select([pl.col(n).cast(t) for n, t in COUNTER_SCHEMA.items()])
        .sort(*WINDOW, "reset")
        .collect()
    )

"""A period without usage events (docs/CHARGES.md, "A period without usage"): the same result
as the full usage path, without building the state that only rates events.

With no event there are no usage or discount lines, no line sums and no per-event parts, and
no counter window is touched: the counters after the period are the open (never-reset)
windows carried as they stood. What still changes is the quota rollover (SPEC §7.3): each
rolling key's deciding entry grants its whole allowance `Q` as a parcel, and carried parcels
go on to expire. The deciding entry is the last winner of its counter key in the period, so
the winner timeline is still needed, but only for the keys (account, service, destination
group) where some candidate's entry rolls over: each key's winners depend on that key's
candidates alone, so the timeline of some keys is those keys' rows of the whole one; and on a
key where no candidate rolls over, the deciding entry (if any) does not roll over either,
which grants no parcel and leaves carried ones unusable, as no deciding entry does
(`rollover.rollover_state`, `parcels_after`). A catalog without rolling entries needs no
timeline rows at all.
"""

from __future__ import annotations

import polars as pl

from pipeline.catalog import CatalogFrames
from pipeline.contracts import USAGE_SUM_SCHEMA
from pipeline.usage.counters import counters_after
from pipeline.usage.entries import Entries, discount_candidates
from pipeline.usage.keys import DETAIL_SCHEMA, KeyBudget
from pipeline.usage.lines import usage_lines
from pipeline.usage.rollover import parcels_after, rollover_state
from pipeline.usage.timeline import winner_timeline

# No event counted: `counters.counters_after` and `rollover.parcels_after` read these columns.
_NO_EVENTS: dict[str, pl.DataType] = {
    "acct_idx": pl.UInt32(), "entry_key": pl.UInt32(), "ckey": pl.UInt32(),
    "window_start": pl.Date(), "head": pl.Boolean(), "c1": pl.Int128(),
}


def _rolling_keys(candidates: pl.LazyFrame, entries: Entries,
                  verdicts: pl.DataFrame) -> pl.LazyFrame:
    """The candidates of the keys (account, pair) where some candidate's entry rolls over."""
    rolling = entries.table.join(
        verdicts.filter(pl.col("rollover") >= 1).select("discount_plan_id", "entry_no"),
        on=["discount_plan_id", "entry_no"],
    ).select("entry_key")
    keys = candidates.join(rolling.lazy(), on="entry_key", how="semi").select(
        "acct_idx", "sdg").unique()
    return candidates.join(keys, on=["acct_idx", "sdg"], how="semi")


def _rolling_accounts(catalog: CatalogFrames, verdicts: pl.DataFrame,
                     account_rows: pl.DataFrame, lifecycles: pl.DataFrame) -> pl.DataFrame:
    """`account_id` of the accounts with an add-on or a main product whose discount plan has
    an entry that rolls over: only their keys can have a rolling candidate."""
    plans = verdicts.filter(pl.col("rollover") >= 1)["discount_plan_id"].unique().implode()
    addons = catalog.addons.filter(pl.col("discount_plan_id").is_in(plans))["addon_id"]
    mains = catalog.main_products.filter(
        pl.col("discount_plan_id").is_in(plans))["main_product_id"]
    return pl.concat([
        lifecycles.filter(pl.col("addon_id").is_in(addons.implode())).select("account_id"),
        account_rows.filter(pl.col("main_product_id").is_in(mains.implode()))
        .select("account_id"),
    ]).unique()


def usage_free(
    catalog: CatalogFrames,
    entries: Entries,
    budget: KeyBudget,
    account_rows: pl.DataFrame,
    lifecycles: pl.DataFrame,
    counters_before_windows: pl.DataFrame,
    accounts: pl.DataFrame,
    period: str,
    parcels_before: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame,
           pl.DataFrame]:
    """Lines, counters after, detail, parcels, parcel use and sums of a period with no event.

    `counters_before_windows`: the open windows (`counters.open_windows`); the catalog must
    carry the rules' rollover verdicts (`CatalogFrames.rollover_entries`).
    """
    verdicts = catalog.rollover_entries
    assert verdicts is not None  # the caller takes the full path without them
    # A key's candidates are its account's: the other accounts' keys have none that rolls.
    ids = _rolling_accounts(catalog, verdicts, account_rows, lifecycles)
    candidates = discount_candidates(
        catalog, entries, account_rows.join(ids, on="account_id", how="semi"),
        lifecycles.join(ids, on="account_id", how="semi"),
        accounts.join(ids, on="account_id", how="semi"),
    )
    timeline, _ = winner_timeline(_rolling_keys(candidates, entries, verdicts), budget)
    rollover = rollover_state(entries, timeline, budget, accounts, parcels_before, verdicts)
    none = pl.DataFrame(schema=_NO_EVENTS)
    parcels, parcel_use = parcels_after(rollover, none, entries, accounts,
                                        counters_before_windows)
    sums = pl.DataFrame(schema=USAGE_SUM_SCHEMA)
    counters = counters_after(none, entries, counters_before_windows, accounts)
    return (usage_lines(sums, accounts, period), counters, pl.DataFrame(schema=DETAIL_SCHEMA),
            parcels, parcel_use, sums)

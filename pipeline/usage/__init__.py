"""Usage lines and discounts (SPEC §4 "Usage discounts"), one module per step:

1. `entries`: the catalog's discount entries and the candidates (add-ons, main products);
2. `timeline`: for each key the winning candidate on each elementary day interval;
3. `rating`: one pass over the usage, split by whether an entry discounts an event;
4. `counters`: each event's counter before and after it, and the counters after the period;
5. `tiers`: each event's discount over the entry's tiers, in Int128 at 10^-12;
6. `lines`: each line's exact sums, `usage` and `discount` lines (rounded once per line) and
   the per-event detail.

A draft period continued from what it counted so far (`UsageSoFar`, docs/RUNS.md "Incremental
nightly") rates only the events after that: its counters continue from the windows it left,
and its line sums add to the sums it counted, before the one rounding.

A period with no event to rate (and no draft to continue) takes `usage_free` instead: the same
frames without the rating state, only the `never` counters carried and the rollover parcels.

`keys` holds the shared names, schemas and the checked packed keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipeline.catalog import CatalogFrames
from pipeline.contracts import USAGE_SUM_SCHEMA, UsageSoFar
from pipeline.usage.counters import counted_events, counters_after, open_windows
from pipeline.usage.entries import Entries, discount_candidates, discount_entries
from pipeline.usage.keys import (
    COUNTER_KIND,
    COUNTER_SCHEMA,
    DETAIL_SCHEMA,
    KEY,
    NEVER_START,
    OPEN,
    OPEN_END,
    PAIR,
    WINDOW,
    KeyBudget,
    KeyBudgetError,
    check_days,
)
from pipeline.usage.lines import line_sums, usage_detail, usage_lines
from pipeline.usage.rating import rated_events, with_pair_index
from pipeline.usage.rollover import (
    PARCEL_SCHEMA,
    PARCEL_USE_SCHEMA,
    empty_parcels,
    parcels_after,
    rollover_state,
    with_carry,
)
from pipeline.usage.tiers import discounted_events
from pipeline.usage.timeline import winner_timeline
from pipeline.usage.usage_free import usage_free

__all__ = [
    "COUNTER_KIND", "COUNTER_SCHEMA", "DETAIL_SCHEMA", "KEY", "NEVER_START", "OPEN", "OPEN_END",
    "PAIR", "PARCEL_SCHEMA", "PARCEL_USE_SCHEMA", "WINDOW", "Entries", "KeyBudget",
    "KeyBudgetError", "UsageResult",
    "counted_events", "counters_after", "discount_candidates", "discount_entries", "open_windows",
    "discounted_events", "key_budget", "line_sums", "rated_events", "usage_charges",
    "usage_detail",
    "usage_lines", "winner_timeline", "with_pair_index",
]


@dataclass(frozen=True)
class UsageResult:
    """Usage and discount lines, counters after the period, and per-event parts."""

    lines: pl.DataFrame
    counters_after: pl.DataFrame
    detail: pl.DataFrame
    # SPEC §7.3: parcels left at the period's end (quota_rollovers) and their use (explain)
    parcels: pl.DataFrame = field(default_factory=empty_parcels)
    parcel_use: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PARCEL_USE_SCHEMA))
    # each line's exact sums (USAGE_SUM_SCHEMA): what a later night continues from
    sums: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=USAGE_SUM_SCHEMA))


def key_budget(accounts: pl.DataFrame, entries: Entries) -> KeyBudget:
    """The checked widths of the packed keys for these accounts and discounted pairs."""
    if accounts.height:
        check_days(accounts["period_start"].min(), accounts["period_end"].max())
    top = accounts["acct_idx"].max() if accounts.height else None
    return KeyBudget.of(int(top) + 1 if top is not None else 0, entries.pairs.height)


def usage_charges(
    catalog: CatalogFrames,
    account_rows: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    accounts: pl.DataFrame,
    period: str,
    detail: bool = True,
    parcels_before: pl.DataFrame | None = None,
    so_far: UsageSoFar | None = None,
    *,
    _full: bool = False,
) -> UsageResult:
    """Usage and discount lines, counters and per-event detail of one period.

    `account_rows` are the raw account versions (for the main product at a date); `accounts`
    is the coordinator's context, one row per account with `acct_idx` and the day limit.
    `so_far`: what a draft of this period counted; `usage` then holds only the later events.
    A period with no event (and no draft to continue) takes `usage_free`, which gives the same
    frames without the rating state; `_full` forces the full path (the tests compare both).
    """
    entries = discount_entries(catalog)
    budget = key_budget(accounts, entries)
    parcels_before = empty_parcels() if parcels_before is None else parcels_before
    if (usage.height == 0 and so_far is None and catalog.rollover_entries is not None
            and not _full):
        lines, counters, detail_rows, parcels, parcel_use, sums = usage_free(
            catalog, entries, budget, account_rows, lifecycles,
            open_windows(counters_before), accounts, period, parcels_before,
        )
        return UsageResult(lines=lines, counters_after=counters, detail=detail_rows,
                           parcels=parcels, parcel_use=parcel_use, sums=sums)
    candidates = discount_candidates(catalog, entries, account_rows, lifecycles, accounts)
    timeline, line_nos = winner_timeline(candidates, budget)
    plain_sums, discountable = rated_events(usage, accounts, entries, timeline, budget)
    rollover = rollover_state(
        entries, timeline, budget, accounts, parcels_before, catalog.rollover_entries,
    )
    windows = open_windows(counters_before, None if so_far is None else so_far.counters)
    counted = with_carry(counted_events(discountable, entries, accounts, windows), rollover)
    del discountable
    discounted = discounted_events(counted, entries)
    del counted
    sums = line_sums(plain_sums, discounted, line_nos, accounts,
                     None if so_far is None else so_far.sums)
    parcels, parcel_use = parcels_after(rollover, discounted, entries, accounts, windows)
    return UsageResult(
        lines=usage_lines(sums, accounts, period),
        counters_after=counters_after(discounted, entries, windows, accounts),
        detail=usage_detail(discounted, entries, line_nos, accounts) if detail
        else pl.DataFrame(schema=DETAIL_SCHEMA),
        parcels=parcels,
        parcel_use=parcel_use,
        sums=sums,
    )

